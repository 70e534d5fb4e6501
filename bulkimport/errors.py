"""Friendly error pages: 403, 404, 413 (upload too large), CSRF failures and 500."""

from __future__ import annotations

from flask import Flask, current_app, render_template
from flask_wtf.csrf import CSRFError

from .extensions import db
from .web import wants_json


def register_error_pages(app: Flask) -> None:
    """Render every expected HTTP error with the site layout instead of a bare page."""

    @app.errorhandler(403)
    def forbidden(error):
        if wants_json():
            return {"error": "forbidden"}, 403
        return render_template("errors/403.html"), 403

    @app.errorhandler(404)
    def not_found(error):
        if wants_json():
            return {"error": "not_found"}, 404
        return render_template("errors/404.html"), 404

    @app.errorhandler(413)
    def too_large(error):
        limit = current_app.config["MAX_UPLOAD_MB"]
        return render_template("errors/413.html", limit=limit), 413

    @app.errorhandler(CSRFError)
    def csrf_failed(error):
        return render_template("errors/csrf.html", reason=error.description), 400

    @app.errorhandler(500)
    def server_error(error):
        # A failed flush leaves the session unusable; the page itself loads the current user
        # (the top bar), so without the rollback the friendly page would fail in turn.
        db.session.rollback()
        if wants_json():
            return {"error": "server_error"}, 500
        return render_template("errors/500.html"), 500
