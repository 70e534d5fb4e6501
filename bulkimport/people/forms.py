"""Forms of Admin > People: search, upload, and the review (action-select) step."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    HiddenField,
    IntegerField,
    RadioField,
    SearchField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, NumberRange, ValidationError

from ..columns import label
from ..importing.schedule import Schedule
from ..importing.staging import APPLICABLE, FILTERS
from ..models import ImportRow, InviteMode
from ..password_policy import MAX_LENGTH_RANGE, MIN_LENGTH_RANGE, TEMP_DAYS_RANGE
from ..site_time import local_text
from ..web import page_number

ENCODINGS = [SelectChoice(value, label) for value, label in (
    ("", "Detect"), ("utf-8", "UTF-8"), ("utf-16", "UTF-16 (with BOM)"),
    ("cp1252", "Windows-1252 (Western Europe)"), ("iso8859-15", "ISO-8859-15"),
    ("latin-1", "ISO-8859-1"), ("cp1250", "Windows-1250 (Central Europe)"),
    ("mac-roman", "Mac Roman"))]
DELIMITERS = [SelectChoice(value, label) for value, label in (
    ("", "Detect"), (",", "Comma ,"), (";", "Semicolon ;"), ("\t", "Tab"),
    ("|", "Vertical bar |"))]


GENERATE_LABEL = "Generate random passwords and send login credentials via email"
ACCOUNT_STATES = ("active", "blocked")  # the user list's filter
INVITE_CHOICES = [SelectChoice(InviteMode.PASSWORD.value, "E-mail a generated password"),
                  SelectChoice(InviteMode.LINK.value, "E-mail a link to choose a password")]


class SearchForm(FlaskForm):
    """The user-list search box (GET, so no CSRF token)."""

    class Meta:  # noqa: D106
        csrf = False

    q = SearchField("Search by username, name or e-mail")
    state = SelectField("Account", choices=[SelectChoice(value, label) for value, label in (
        ("", "Active and blocked"), ("active", "Active"), ("blocked", "Blocked"))],
        validate_choice=False)


class UploadForm(FlaskForm):
    """Step 1: the file, the password option and the advanced overrides."""

    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file to upload.")],
                     render_kw={"accept": ".csv,.txt,.tsv,.xlsx,.xlsm,text/csv,text/plain,"
                                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"})
    generate_passwords = BooleanField(GENERATE_LABEL)
    invite_by = RadioField("What the e-mail gives each new user", default=InviteMode.PASSWORD,
                           choices=INVITE_CHOICES)
    list_missing = BooleanField("Users missing from this file: list them")
    clear_empty = BooleanField("Empty cells clear values")
    update_passwords = BooleanField("Also set the passwords of existing users")
    encoding = SelectField("Encoding", choices=ENCODINGS, default="")
    delimiter = SelectField("Delimiter", choices=DELIMITERS, default="")
    # Defaults for what rows leave out; the profile fields' are read by name (`default_<name>`).
    default_must_change_password = SelectField(
        label("must_change_password"), default="", choices=[SelectChoice(v, t) for v, t in (
            ("", "No default"), ("yes", "Yes"), ("no", "No"))])
    default_language = SelectField("Language", default="", validate_choice=False)
    default_active = SelectField(
        label("active"), default="", choices=[SelectChoice(v, t) for v, t in (
            ("", "No default"), ("Active", "Active"), ("Blocked", "Blocked"))])
    submit = SubmitField("Upload and review")

    def defaults(self, fields: list, submitted) -> dict[str, str]:
        """The defaults chosen, by key: the standard ones and each profile field's text."""
        chosen = {"must_change_password": self.default_must_change_password.data,
                  "language": self.default_language.data, "active": self.default_active.data}
        chosen.update({f.name: submitted.get(f"default_{f.name}", "") for f in fields})
        return {key: (value or "").strip() for key, value in chosen.items()
                if (value or "").strip()}


class ReviewForm(FlaskForm):
    """Step 2: one radio per visible row (added by `review_form_for`), a checkbox per column
    heading with its state as rendered, and where to go next."""

    all_add = BooleanField("Add")
    all_update = BooleanField("Update")
    all_block = BooleanField("Block")
    all_skip = BooleanField("Skip")
    was_all_add = HiddenField()
    was_all_update = HiddenField()
    was_all_block = HiddenField()
    was_all_skip = HiddenField()
    # Set to "1" by the page's script, which mirrors a heading tick onto the visible radios:
    # then every visible radio is what the administrator sees and wants.
    scripted = HiddenField()
    show = HiddenField(default="all")
    page = HiddenField(default="1")
    goto_show = HiddenField()
    goto_page = HiddenField()
    save = SubmitField("Save choices")
    submit = SubmitField("Submit")

    def heading_changes(self) -> dict[str, tuple[bool, bool]]:
        """(was ticked, is ticked) of each column-heading checkbox."""
        return {action: (getattr(self, f"was_all_{action}").data == "1",
                         bool(getattr(self, f"all_{action}").data))
                for action in APPLICABLE}

    def row_changes(self) -> list[tuple[int, str]]:
        """(row id, choice) for every visible row whose radio the administrator set: all of
        them when the script ran, else those changed from how they were rendered (so that an
        untouched radio does not undo a heading ticked without JavaScript)."""
        every = self.scripted.data == "1"
        changes = []
        for name, field in self._fields.items():
            changed = field.data != field.object_data
            if name.startswith("row_") and field.data and (every or changed):
                changes.append((int(name[4:]), field.data))
        return changes

    def destination(self) -> tuple[str, int]:
        """The filter and page to show next: the one asked for, else the current one."""
        show = self.goto_show.data or self.show.data
        page = self.goto_page.data or (self.page.data if not self.goto_show.data else "1")
        return (show if show in FILTERS else "all"), page_number({"page": page})


def review_form_for(rows: list[ImportRow], headings: dict[str, bool]) -> ReviewForm:
    """A ReviewForm with a radio group for every selectable row of the visible page."""

    class PageReviewForm(ReviewForm):
        pass

    for row in rows:
        if row.proposed == ImportRow.ERROR:
            continue  # rows in error cannot be selected
        choices = [SelectChoice(action, action.title()) for action, proposed in APPLICABLE.items()
                   if row.proposed in proposed]
        setattr(PageReviewForm, f"row_{row.id}", RadioField(
            f"Line {row.line}", choices=choices, default=row.choice, validate_choice=True))
    form = PageReviewForm()
    if not form.is_submitted():
        for action, ticked in headings.items():
            getattr(form, f"was_all_{action}").data = "1" if ticked else ""
            getattr(form, f"all_{action}").data = ticked
    return form


class ResendForm(FlaskForm):
    """Resend one invitation (the row's button), the ticked ones, or every failed one; the
    first POST asks for confirmation, which `confirm` gives. `user_id` names the user page to
    return to."""

    selected = SelectMultipleField("Select", choices=[], validate_choice=False)
    one = HiddenField()
    batch_id = HiddenField()
    user_id = HiddenField()
    resend_selected = SubmitField("Resend selected")
    all_failed = SubmitField("Resend all failed")
    confirm = SubmitField("Send new passwords")
    send_now = SubmitField("Send selected now")
    move = SubmitField("Move selected to")
    send_at = StringField("New sending time", render_kw={"type": "datetime-local"})


class AccountStateForm(FlaskForm):
    """Block or unblock one user (the user page's button) or the ticked users of the list;
    `q` and `state` carry the list's search back to it."""

    selected = SelectMultipleField("Select", choices=[], validate_choice=False)
    q = HiddenField()
    state = HiddenField()
    block = SubmitField("Block selected")
    unblock = SubmitField("Unblock selected")


def _between(bounds: tuple[int, int]) -> list:
    low, high = bounds
    return [InputRequired("Enter a whole number."),
            NumberRange(low, high, f"Enter a whole number from {low} to {high}.")]


class PasswordPolicyForm(FlaskForm):
    """Admin > People > Password policy: the rules every chosen or generated password follows."""

    min_length = IntegerField("Minimum length (characters)", validators=_between(MIN_LENGTH_RANGE))
    max_length = IntegerField("Maximum length (characters)", validators=_between(MAX_LENGTH_RANGE))
    require_lowercase = BooleanField("Require a lower-case letter")
    require_uppercase = BooleanField("Require an upper-case letter")
    require_digit = BooleanField("Require a digit")
    require_symbol = BooleanField("Require a symbol")
    refuse_personal = BooleanField(
        "Refuse passwords containing the username, first name, surname or e-mail local part")
    refuse_common = BooleanField("Refuse the 30,000 most common passwords")
    refuse_reuse = BooleanField("Refuse reusing the current password")
    temp_password_days = IntegerField("Generated passwords are valid for (days)",
                                      validators=_between(TEMP_DAYS_RANGE))
    submit = SubmitField("Save policy")

    def validate_max_length(self, field) -> None:
        """The maximum cannot be below the minimum."""
        if self.min_length.data is not None and field.data is not None \
                and field.data < self.min_length.data:
            raise ValidationError("The maximum length cannot be below the minimum length.")


class FieldForm(FlaskForm):
    """A custom profile field: its symbolic name (the CSV heading), label, type and rules."""

    name = StringField("Symbolic name (the CSV heading)", validators=[InputRequired()],
                       render_kw={"placeholder": "department", "autocomplete": "off"})
    label = StringField("Label", validators=[InputRequired()],
                        render_kw={"placeholder": "Department"})
    type = SelectField("Type", choices=[
        SelectChoice(kind, label) for kind, label in (
            ("text", "Text"), ("number", "Number"), ("date", "Date"),
            ("choice", "Choice (one of a list)"), ("yesno", "Yes/no"))])
    options = TextAreaField("Options of a choice, one per line", render_kw={"rows": 4})
    required = BooleanField("Required (every new user must have a value)")
    unique = BooleanField("Unique (no two users may have the same value)")
    confirm = BooleanField("I have read what this change does to the stored values")
    submit = SubmitField("Save field")

    def option_list(self) -> list[str]:
        """The options as a list, without blank lines or surrounding spaces."""
        return [line.strip() for line in (self.options.data or "").splitlines() if line.strip()]


class ExportForm(FlaskForm):
    """Admin > People > Export users: the columns and the same search as the user list (a GET
    form: it changes nothing)."""

    class Meta:  # noqa: D106
        csrf = False

    columns = SelectMultipleField("Columns")
    q = SearchField("Only users matching (username, name or e-mail)")
    download = SubmitField("Download CSV")


NEW_FIELD = "__new__"  # the mapping step's "Create a profile field…" choice


class MappingForm(FlaskForm):
    """The mapping step: a select per column of the file (added by `mapping_form_for`), whether
    the username comes from the address, and whether to remember the mapping."""

    username_from_email = BooleanField(
        "Username from the e-mail address (the part before @), where the file has none")
    remember = BooleanField("Remember this mapping for files with the same headings",
                            default=True)
    submit = SubmitField("Apply and review")

    def column_fields(self) -> list:
        """The select of every column, in the file's order."""
        return [self[name] for name in sorted(
            (n for n in self._fields if n.startswith("column_")), key=lambda n: int(n[7:]))]


def mapping_form_for(headings: list[str], targets: list[str | None],
                     choices: list[tuple[str, str]]) -> MappingForm:
    """A MappingForm with one select per column, preset to its current target (an undecided
    column starts on "Do not import")."""

    class FileMappingForm(MappingForm):
        pass

    options = [SelectChoice(value, label) for value, label in
               [*choices, (NEW_FIELD, "Create a text profile field named after the column…")]]
    for index, (heading, target) in enumerate(zip(headings, targets, strict=True)):
        setattr(FileMappingForm, f"column_{index}", SelectField(
            heading, choices=options, default=target or "", validate_choice=True))
    return FileMappingForm()


class BatchOptionForm(FlaskForm):
    """A one-click change of how the review reads the kept file."""

    change = HiddenField(validators=[InputRequired()])
    encoding = HiddenField()
    sheet = StringField("Sheet")


class InvitationsForm(FlaskForm):
    """The review's choice of what the invitations carry and when they go; the column list is
    the file's headings (set by the view)."""

    invite_by = RadioField("What the e-mail gives each new user", choices=INVITE_CHOICES)
    send_when = RadioField("When the invitations go", default="now", choices=[
        SelectChoice("now", "Now, as soon as the file is submitted"),
        SelectChoice("at", "At a date and time"),
        SelectChoice("column", "On each row's date, from a column of the file")])
    send_at = StringField("Date and time", render_kw={"type": "datetime-local"})
    send_column = SelectField("Date column", validate_choice=False)
    send_time = StringField("Time, when the cell has only a date", default="08:00",
                            render_kw={"type": "time"})
    save_invitations = SubmitField("Save when and how")


def invitations_form_for(batch) -> InvitationsForm:
    """The review's invitations form, showing what the batch has now."""
    schedule = Schedule.from_json((batch.notes or {}).get("schedule"))
    form = InvitationsForm(formdata=None, invite_by=batch.invite_mode.value,
                           send_when=schedule.when, send_column=schedule.column,
                           send_time=schedule.time,
                           send_at=local_text(schedule.at)[:16].replace(" ", "T"))
    form.send_column.choices = [SelectChoice(c["heading"], c["heading"]) for c in batch.columns]
    return form


class RenameMappingForm(FlaskForm):
    """Admin > People > Saved mappings: rename one."""

    name = StringField("Name", validators=[InputRequired("Give the mapping a name.")])
    submit = SubmitField("Rename")


class DeleteMappingForm(FlaskForm):
    """Admin > People > Saved mappings: delete one."""

    delete = SubmitField("Delete")
