"""Admin > System: the audit log, the outbox of the embedded mail mode, resuming paused sending,
and the banner that tells every administrator when sending is paused."""

from flask import Blueprint

from ..web import require_admin

bp = Blueprint("system", __name__, url_prefix="/admin/system")
bp.before_request(require_admin)  # every page here is for administrators


from . import audit_log, landing, routes  # noqa: E402,F401  (views attach themselves to bp)
