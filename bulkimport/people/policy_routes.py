"""View of Admin > People > Password policy: the rules in force, and the form that sets them."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..extensions import db
from ..password_policy import POLICY_FIELDS, load_policy, rules_in_force, save_policy
from ..web import form_status
from . import bp
from .forms import PasswordPolicyForm


@bp.route("/password-policy", methods=["GET", "POST"])
def password_policy():
    """Show the rules in force and let an administrator change them (audited)."""
    policy = load_policy(db.session)
    form = PasswordPolicyForm(obj=policy)
    if form.validate_on_submit():
        changes = save_policy(db.session, {name: form[name].data for name in POLICY_FIELDS},
                              actor_id=current_user.id, address=request.remote_addr)
        db.session.commit()
        if changes:
            flash("The password policy has been saved; it applies to every password chosen or "
                  "generated from now on.", "success")
        else:
            flash("Nothing changed.", "info")
        return redirect(url_for(".password_policy"))
    return render_template("people/password_policy.html", form=form,
                           rules=rules_in_force(policy)), form_status(form)
