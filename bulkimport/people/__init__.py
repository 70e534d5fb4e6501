"""Admin > People: the user list and each user's page, the import journey (upload, review,
submit, results), the invitations and the password policy."""

from flask import Blueprint

from ..web import require_admin

bp = Blueprint("people", __name__, url_prefix="/admin/people")
bp.before_request(require_admin)  # every page here is for administrators


from . import (  # noqa: E402,F401  (views attach themselves to bp)
    exports,
    fields,
    history,
    invitations,
    landing,
    mapping_step,
    policy_routes,
    routes,
    users,
)
