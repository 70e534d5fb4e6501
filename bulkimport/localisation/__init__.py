"""Admin > System > Localisation: the site's languages, and editing the notification templates
per language (with versions, preview and a test e-mail)."""

from flask import Blueprint

from ..web import require_admin

bp = Blueprint("localisation", __name__, url_prefix="/admin/system/localisation")
bp.before_request(require_admin)  # every page here is for administrators


from . import routes  # noqa: E402,F401  (views attach themselves to bp)
