"""Defaults for what a file leaves out (issue 15, point 5): the upload form and `--default` give
values for every row with no such column or an empty cell — Change password next time, the
language, the account state and any profile field, typed like the import — marked on the
review, and never put over a value the file gives."""

from __future__ import annotations

import re

import pytest
from conftest import batch_id_of, choose_all, login_admin, upload, wait_for_jobs
from sqlalchemy import select
from test_profile_fields import new_field, stored

from bulkimport.extensions import db
from bulkimport.mailing.languages import add_language
from bulkimport.models import ImportBatch, User

FILE = ("username,firstname,surname,email,language\n"
        "ann,Ann,Lee,ann@example.com,en\n"
        "bob,Bob,Ray,bob@example.com,\n")


def site(app_factory, **config):
    """An application with French beside English and two profile fields; its admin client."""
    app = app_factory(**config)
    client = login_admin(app)
    with app.app_context():
        boss = db.session.scalar(select(User.id).where(User.username == "boss"))
        add_language(db.session, "fr", "Français", actor_id=boss)
        db.session.commit()
    new_field(client, "department", "choice", options=("Finance", "Sales"))
    new_field(client, "desk", "number")
    return app, client


def upload_with(client, data: str, **defaults: str):
    return upload(client, data.encode(), "staff.csv", **defaults)


def accounts(app) -> dict[str, tuple]:
    with app.app_context():
        return {u.username: (u.must_change_password, u.language, u.active)
                for u in db.session.scalars(select(User).where(~User.is_admin))}


def test_defaults_fill_what_rows_leave_out_and_never_what_they_give(app_factory):
    app, client = site(app_factory)
    response = upload_with(client, FILE, must_change_password="yes", language="fr",
                           active="Blocked", department="Sales", desk="12")
    batch_id = batch_id_of(response)
    review = client.get(response.location).get_data(as_text=True)
    assert ('id="defaults">Change password next time: yes; language: fr; Account state: '
            'Blocked; department: Sales; desk: 12 — where a row has no such column') in review
    ann = re.search(r'<tr class="" data-line="2">.*?</tr>', review, re.S).group(0)
    bob = re.search(r'<tr class="" data-line="3">.*?</tr>', review, re.S).group(0)
    default = ' <span class="small text-muted defaulted">(default)</span>'
    assert f"language: fr{default}" in bob and "language: en</li>" in ann  # the file's stays
    assert f"Account state: Blocked{default}" in ann
    assert f"Change password next time: yes{default}" in ann
    assert f"department: Sales{default}" in bob and f"desk: 12{default}" in bob
    choose_all(client, batch_id, "add")
    wait_for_jobs(app)
    assert accounts(app) == {"ann": (True, "en", False), "bob": (True, "fr", False)}
    assert stored(app) == {"ann": {"department": "Sales", "desk": "12"},
                           "bob": {"department": "Sales", "desk": "12"}}


def test_a_default_shows_as_a_change_of_an_existing_user(app_factory):
    app, client = site(app_factory)
    choose_all(client, batch_id_of(upload_with(client, FILE)), "add")
    wait_for_jobs(app)
    response = upload_with(client, FILE, must_change_password="yes")
    review = client.get(response.location).get_data(as_text=True)
    assert ('Change password next time: <span class="old">no</span> → yes'
            ' <span class="small text-muted defaulted">(default)</span>') in review
    choose_all(client, batch_id_of(response), "update")
    assert {name: state[0] for name, state in accounts(app).items()} == {"ann": True,
                                                                        "bob": True}


@pytest.mark.parametrize(("defaults", "message"), [
    ({"language": "de"}, "language “de” is not a language of this site."),
    ({"department": "Marketing"}, "Marketing"),
    ({"desk": "0491 570 156"}, "leading zeros would be lost"),
    ({"desk": "twelve"}, "desk"),
    ({"active": "Maybe"}, "Not a valid choice"),
])
def test_a_default_that_is_not_a_value_of_its_field_is_refused_at_upload(app_factory, defaults,
                                                                         message):
    app, client = site(app_factory)
    response = upload_with(client, FILE, **defaults)
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and message in page
    assert 'class="invalid-feedback d-block"' in page
    with app.app_context():
        assert db.session.scalar(select(ImportBatch.id)) is None  # nothing staged


def test_a_big_upload_read_in_the_background_keeps_its_defaults(app_factory):
    app, client = site(app_factory, BACKGROUND_UPLOAD_KB=0.01)
    response = upload_with(client, FILE, language="fr")
    assert "/reading" in response.location
    wait_for_jobs(app)
    batch_id = int(response.location.split("/")[-2])
    choose_all(client, batch_id, "add")
    wait_for_jobs(app)
    assert {name: state[1] for name, state in accounts(app).items()} == {"ann": "en",
                                                                        "bob": "fr"}


def test_the_command_line_takes_the_same_defaults(app_factory, cli, tmp_path):
    app, _ = site(app_factory)
    path = tmp_path / "staff.csv"
    path.write_text(FILE)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["people", "import", str(path), "--generate-passwords",
                                 "--dry-run", "--default", "Change password next time=yes",
                                 "--default", "department=Sales"])
    assert "Defaults: Change password next time: yes; department: Sales" in result.output
    result = runner.invoke(args=["people", "import", str(path), "--generate-passwords",
                                 "--actions", "add", "--default", "Account state=Blocked",
                                 "--default", "language=fr"])
    assert result.exit_code == 0, result.output
    assert accounts(app) == {"ann": (False, "en", False), "bob": (False, "fr", False)}
    refused = runner.invoke(args=["people", "import", str(path), "--default", "desk=lots"])
    assert refused.exit_code == 1 and "--default desk:" in refused.output
    nonsense = runner.invoke(args=["people", "import", str(path), "--default", "email=x@y.z"])
    assert nonsense.exit_code == 1 and "takes no default" in nonsense.output
