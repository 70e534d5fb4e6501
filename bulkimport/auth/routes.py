"""Views of the auth blueprint: home, login, logout, the Account page, changing one's password,
choosing one through an invitation's link, and the hook that holds users who must choose a new
password.

A password typed into the change form is sent back in the page shown again after an error only
when it is the current password and it was right: that is the long generated one, typed from an
e-mail, which the user has just proved and which stops working once the change succeeds. The new
password and its confirmation are never sent back: they are the secret that lasts, and they are
what an error is about. The page is sent with `Cache-Control: no-store`, so that no copy of it is
kept by the browser's cache or its back button.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user
from wtforms.widgets import PasswordInput

from ..extensions import db
from ..login import change_password as change_user_password
from ..login import log_in, temporary_password_notice
from ..login_sessions import TOKEN_KEY, end_session, open_session
from ..mailing.languages import languages
from ..password_links import NOT_VALID
from ..password_links import find as find_link
from ..password_links import set_password as set_password_by_link
from ..password_policy import load_policy, rules_in_force
from ..web import form_status, wants_json
from . import bp
from .forms import ChangePasswordForm, LanguageChoiceForm, LoginForm, SetPasswordForm

# What a user who must change their password may still reach.
OPEN_TO_FLAGGED = frozenset({"auth.change_password", "auth.logout", "auth.healthz",
                             "auth.open_link", "auth.set_password"})
LINK_KEY = "set_password_link"  # the session key holding an opened link's token
MUST_CHANGE = "You must choose a new password before you can continue."


@bp.before_app_request
def hold_flagged_users():
    """A user who must change their password reaches only the change page, logout and static
    files: pages redirect there, JSON requests get 403 with the reason."""
    if not current_user.is_authenticated or not current_user.must_change_password:
        return None
    endpoint = request.endpoint or ""
    if endpoint in OPEN_TO_FLAGGED or endpoint == "static" or endpoint.endswith(".static"):
        return None
    target = url_for("auth.change_password")
    if wants_json():
        return {"error": "password_change_required", "message": MUST_CHANGE,
                "location": target}, 403
    next_url = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("auth.change_password", next=next_url) if next_url
                    and endpoint != "auth.home" else target)


@bp.get("/healthz")
def healthz():
    """Liveness as JSON (200, or 503 when the database cannot be reached); administrators and
    callers with the health token (`Authorization: Bearer …`) also get Redis and SMTP."""
    from ..health import health, token_matches

    # Other schemes (an intranet proxy's Negotiate or Basic) are not ours to judge: ignored.
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        if not token_matches(presented.strip(), current_app.config["HEALTH_TOKEN"]):
            return ({"error": "invalid_token"}, 401,
                    {"WWW-Authenticate": 'Bearer realm="healthz"'})
        return health(detailed=True)
    administrator = (current_user.is_authenticated and current_user.is_admin
                     and not current_user.must_change_password)
    return health(detailed=administrator)


@bp.get("/")
@login_required
def home():
    """Administrators start at Admin > People; everyone else at their Account page."""
    if current_user.is_admin:
        return redirect(url_for("people.index"))
    return redirect(url_for("auth.account"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form and log the user in; one message for every kind of failure."""
    form = LoginForm()
    if form.validate_on_submit():
        result = log_in(db.session, form.username.data, form.password.data,
                        request.remote_addr)
        token = _open_session(result.user) if result.user is not None else None
        db.session.commit()  # failures, audit events, a promoted invitation password, a re-hash
        if result.user is None:
            flash(result.message, "danger")
        else:
            _remember(result.user, token)
            target = _safe_next(request.args.get("next"))
            notice = temporary_password_notice(result.user)
            # The Account and change-password pages say it themselves, where it can be acted on.
            if notice and not _lands_on_password_pages(result.user, target):
                flash(notice, "warning")
            if result.user.must_change_password:
                return redirect(url_for("auth.change_password", next=target))
            return redirect(target or url_for("auth.home"))
    return render_template("auth/login.html", form=form), form_status(form)


def _lands_on_password_pages(user, target: str | None) -> bool:
    """Whether a login of `user` that goes on to `target` lands on the Account page or the
    change-password page (home is the Account page for users who are not administrators)."""
    path = urlsplit(target).path if target else url_for("auth.home")
    if path == url_for("auth.home") and not user.is_admin:
        path = url_for("auth.account")
    return path in (url_for("auth.account"), url_for("auth.change_password"))


@bp.post("/logout")
def logout():
    """Log out (POST only, with a CSRF token, so that a link cannot log anyone out); the
    session ends on the server too, so that a copy of the cookie opens nothing."""
    end_session(db.session, session.get(TOKEN_KEY))
    db.session.commit()
    logout_user()
    session.clear()
    flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.get("/account")
@login_required
def account():
    """The user's own details, the language of their e-mails, and the way to change their
    password."""
    return render_template("auth/account.html", language_form=_language_form())


@bp.post("/account/language")
@login_required
def choose_language():
    """Set the language of the user's own e-mails to one of the site's languages."""
    form = _language_form()
    if not form.validate_on_submit():
        flash("Choose one of the languages of the site.", "danger")
        return render_template("auth/account.html", language_form=form), form_status(form)
    user = current_user._get_current_object()
    user.language = form.language.data or None
    db.session.commit()
    flash("The language of your e-mails has been saved.", "success")
    return redirect(url_for("auth.account"))


def _language_form() -> LanguageChoiceForm:
    form = LanguageChoiceForm()
    form.language.choices = [("", "The site's default language")] + [
        (language.code, f"{language.name} ({language.code})")
        for language in languages(db.session)]
    if not form.is_submitted():
        form.language.data = current_user.language or ""
    return form


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Choose a new password (forced after a first login, or from the Account page); each broken
    policy rule is named. Success ends every other session and rotates this one."""
    form = ChangePasswordForm()
    forced = current_user.must_change_password
    if form.validate_on_submit():
        user = current_user._get_current_object()
        problems = change_user_password(db.session, user, form.current_password.data,
                                        form.new_password.data, form.confirm_password.data,
                                        request.remote_addr)
        token = None if problems else _open_session(user)
        db.session.commit()  # the change, or a counted failure and its audit event
        if not problems:
            _remember(user, token)
            flash("Your password has been changed. Other sessions of your account have ended.",
                  "success")
            return redirect(_safe_next(request.args.get("next")) or url_for("auth.home"))
        for name, messages in problems.items():
            form[name].errors = list(messages)
        if "current_password" not in problems:  # right: kept (see the module's docstring)
            form.current_password.widget = PasswordInput(hide_value=False)
    rules = rules_in_force(load_policy(db.session))
    response = make_response(render_template(
        "auth/change_password.html", form=form, forced=forced, rules=rules,
        current_kept=not form.current_password.widget.hide_value), form_status(form))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/set-password/<token>")
def open_link(token: str):
    """An invitation's link: a working one is kept in the session and the browser is sent on
    to the form, so that the token leaves the address bar, the history and any Referer; a dead
    one says why and how to get a new one."""
    link, why = find_link(db.session, token)
    db.session.rollback()
    if link is None:
        return _link_problem(why)
    session[LINK_KEY] = token
    return redirect(url_for("auth.set_password"))


@bp.route("/set-password", methods=["GET", "POST"])
def set_password():
    """Choose a password through the opened link (the policy's rules shown, the username too);
    success logs the user in, ending every other session of theirs."""
    token = session.get(LINK_KEY) or ""
    link, why = find_link(db.session, token)
    if link is None:
        session.pop(LINK_KEY, None)
        return _link_problem(why)
    form = SetPasswordForm()
    username = link.user.username
    if form.validate_on_submit():
        user, problems = set_password_by_link(db.session, token, form.new_password.data,
                                              form.confirm_password.data, request.remote_addr)
        if "link" in problems:  # used or replaced a moment ago, by another tab
            db.session.rollback()
            session.pop(LINK_KEY, None)
            return _link_problem(problems["link"][0])
        token = None if problems else _open_session(user)
        db.session.commit()
        if not problems:
            _remember(user, token)
            flash("Your password is set and you are logged in.", "success")
            return redirect(url_for("auth.home"))
        for name, messages in problems.items():
            form[name].errors = list(messages)
    rules = rules_in_force(load_policy(db.session), choosing_first=True)
    db.session.rollback()
    response = make_response(render_template("auth/set_password.html", form=form,
                                             username=username, rules=rules), form_status(form))
    response.headers["Cache-Control"] = "no-store"
    return response


def _link_problem(message: str | None):
    """The page of a link that does not work: the same for every reason but the sentence, and
    never naming an account."""
    response = make_response(render_template("auth/link_problem.html",
                                             message=message or NOT_VALID), 410)
    response.headers["Cache-Control"] = "no-store"
    return response


def _open_session(user) -> str:
    """A new server-side session for `user` (the browser's previous one ends): its token."""
    return open_session(db.session, user, request.remote_addr, replacing=session.get(TOKEN_KEY))


def _remember(user, token: str) -> None:
    """Give the browser a fresh cookie for the session `token`: nothing carried over."""
    session.clear()
    session[TOKEN_KEY] = token
    login_user(user)


def _safe_next(target: str | None) -> str | None:
    """`target` if it stays on this site (a path, no scheme or host), else None."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(c) < 32 for c in target):  # browsers read "/\evil" as "//evil"
        return None
    return target
