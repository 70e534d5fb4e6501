"""Views of the auth blueprint: home, login, logout."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from ..extensions import db
from . import bp
from .forms import LoginForm
from .service import authenticate


@bp.get("/")
@login_required
def home():
    """Administrators start at Admin > People; everyone else sees their own account."""
    if current_user.is_admin:
        return redirect(url_for("people.index"))
    return render_template("auth/home.html")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form and log the user in; one message for every kind of failure."""
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(db.session, form.username.data, form.password.data)
        if user is None:
            flash("Invalid username or password.", "danger")
        else:
            db.session.commit()  # keeps a pending invitation password that was just confirmed
            session.clear()  # a fresh session at login: nothing carried over from before
            login_user(user)
            return redirect(_safe_next(request.args.get("next")) or url_for("auth.home"))
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
def logout():
    """Log out (POST only, with a CSRF token, so that a link cannot log anyone out)."""
    logout_user()
    session.clear()
    flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))


def _safe_next(target: str | None) -> str | None:
    """`target` if it stays on this site (a path, no scheme or host), else None."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target
