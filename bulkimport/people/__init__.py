"""Admin > People: the user list and the import journey (upload, review, submit, results)."""

from flask import Blueprint, abort
from flask_login import current_user

from ..extensions import login_manager

bp = Blueprint("people", __name__, url_prefix="/admin/people")


@bp.before_request
def require_admin():
    """Every page here is for administrators: anonymous → login page, others → 403."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_admin:
        abort(403)


from . import invitations, routes  # noqa: E402,F401  (views attach themselves to bp)
