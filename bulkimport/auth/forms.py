"""Forms of the auth blueprint: logging in, changing one's password and choosing one through
an invitation's link."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired


class LoginForm(FlaskForm):
    """Username and password."""

    username = StringField("Username", validators=[DataRequired()],
                           render_kw={"autocomplete": "username", "autofocus": True})
    password = PasswordField("Password", validators=[DataRequired()],
                             render_kw={"autocomplete": "current-password"})
    submit = SubmitField("Log in")


class ChangePasswordForm(FlaskForm):
    """The current password, the new one and its confirmation; the policy is checked by
    `login.change_password`, which names each failed rule."""

    current_password = PasswordField("Current password", validators=[DataRequired()],
                                     render_kw={"autocomplete": "current-password"})
    new_password = PasswordField("New password", validators=[DataRequired()],
                                 render_kw={"autocomplete": "new-password"})
    confirm_password = PasswordField("Confirm the new password", validators=[DataRequired()],
                                     render_kw={"autocomplete": "new-password"})
    submit = SubmitField("Change password")


class SetPasswordForm(FlaskForm):
    """The password chosen through an invitation's link, and its confirmation; the policy is
    checked by `password_links.set_password`."""

    new_password = PasswordField("New password", validators=[DataRequired()],
                                 render_kw={"autocomplete": "new-password", "autofocus": True})
    confirm_password = PasswordField("Confirm the new password", validators=[DataRequired()],
                                     render_kw={"autocomplete": "new-password"})
    submit = SubmitField("Set password and log in")


class LanguageChoiceForm(FlaskForm):
    """The language of the user's e-mails, among the site's languages."""

    language = SelectField("Language of your e-mails")
    save_language = SubmitField("Save language")
