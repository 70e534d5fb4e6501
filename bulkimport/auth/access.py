"""Who may see what: the guard that administrator-only blueprints run before every request."""

from flask import abort
from flask_login import current_user

from ..extensions import login_manager


def require_admin():
    """Anonymous visitors go to the login page; logged-in users who are not administrators get
    403 (not a redirect, which would loop)."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_admin:
        abort(403)
    return None
