"""Admin > System > Localisation: editing notification templates per language.

Only the blueprint exists so far; its pages come with the localisation issue.
"""

from flask import Blueprint

bp = Blueprint("localisation", __name__, url_prefix="/admin/system/localisation")
