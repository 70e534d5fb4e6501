"""Forms of Admin > System > Localisation."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length


class LanguageForm(FlaskForm):
    """Add a language of the site by its code and name."""

    code = StringField("Code", validators=[DataRequired(), Length(max=16)],
                       render_kw={"placeholder": "de", "autocomplete": "off"})
    name = StringField("Name", validators=[DataRequired(), Length(max=64)],
                       render_kw={"placeholder": "Deutsch"})
    add = SubmitField("Add language")


class DefaultLanguageForm(FlaskForm):
    """Pick the language that users without a translation of their own fall back to."""

    language = SelectField("Default language", validators=[DataRequired()])
    make_default = SubmitField("Use as default")


class TemplateForm(FlaskForm):
    """Subject, HTML body and text body of one notification template in one language, and what
    to do with them."""

    subject = StringField("Subject", render_kw={"spellcheck": "false"})
    html = TextAreaField("HTML body", render_kw={"rows": 14, "spellcheck": "false",
                                                 "class": "font-monospace"})
    text = TextAreaField("Text body", render_kw={"rows": 12, "spellcheck": "false",
                                                 "class": "font-monospace"})
    preview_user = StringField("Preview as user (username; sample data if empty)",
                               validators=[Length(max=100)])
    save = SubmitField("Save")
    preview = SubmitField("Preview")
    send_test = SubmitField("Send test e-mail to me")
    reset = SubmitField("Reset to default")


class RestoreForm(FlaskForm):
    """Restore one earlier version (the CSRF token is all it carries)."""

    restore = SubmitField("Restore")
