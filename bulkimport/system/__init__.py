"""Admin > System: the outbox of the embedded mail mode, resuming paused sending, and the
banner that tells every administrator when sending is paused."""

from flask import Blueprint, abort
from flask_login import current_user

from ..extensions import login_manager

bp = Blueprint("system", __name__, url_prefix="/admin/system")


@bp.before_request
def require_admin():
    """Every page here is for administrators: anonymous → login page, others → 403."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_admin:
        abort(403)


from . import routes  # noqa: E402,F401  (views attach themselves to bp)
