"""Leavers found by the monthly export (issue 15, point 4): with "Users missing from this file:
list them", the review lists the active users other than administrators whom the file does not
name, each with a Block choice (none selected at first, a Block heading for all), and Submit
blocks those chosen in the same transaction as the rest; the results CSV and the audit trail
name them. The CLI has --list-missing and --actions …,block."""

from __future__ import annotations

import csv
import io
import re

import pytest
from conftest import (
    USER_PASSWORD,
    add_user,
    batch_id_of,
    choose_all,
    login_admin,
    upload,
    wait_for_jobs,
)
from sqlalchemy import select

from bulkimport.extensions import db
from bulkimport.models import AuditEvent, ImportBatch, ImportRow, User

FILE = ("username,firstname,surname,email\n"
        "ann,Ann,Lee,ann@example.com\n"
        "eve,Eve,New,eve@example.com\n")


def staff(app_factory, **config):
    """ann, bob and cat active, dan blocked already, and the administrator boss."""
    app = app_factory(**config)
    client = login_admin(app)
    for name in ("ann", "bob", "cat"):
        add_user(app, name, f"{name}@example.com", firstname=name.title(), surname="Lee")
    add_user(app, "dan", "dan@example.com", active=False)
    return app, client


def upload_listing(client, data: str = FILE):
    return upload(client, data.encode(), "staff.csv", list_missing=True)


def states(app) -> dict[str, bool]:
    with app.app_context():
        return dict(db.session.execute(select(User.username, User.active)
                                       .where(~User.is_admin)).all())


def row_ids(app, batch_id: int) -> dict[str, int]:
    with app.app_context():
        return dict(db.session.execute(select(ImportRow.username, ImportRow.id)
                                       .where(ImportRow.batch_id == batch_id)).all())


def test_the_review_lists_the_leavers_and_blocks_only_those_chosen(app_factory):
    app, client = staff(app_factory)
    bob_client = app.test_client()
    bob_client.post("/login", data={"username": "bob", "password": USER_PASSWORD})
    assert bob_client.get("/account").status_code == 200
    response = upload_listing(client)
    batch_id = batch_id_of(response)
    review = client.get(response.location).get_data(as_text=True)
    assert "2 active users (not administrators) are missing from it." in review
    assert 'data-select-all="block"' in review and "Block" in review
    assert 'data-selected="block">0</strong> to block' in review  # nothing chosen at first
    missing = client.get(f"/admin/people/import/{batch_id}?show=missing").get_data(as_text=True)
    listed = re.findall(r'<tr class="" data-line="\d+">.*?<td>—</td>\s*<td>(\w+)</td>', missing,
                        re.S)
    assert listed == ["bob", "cat"]  # not the administrator, nor dan, blocked already
    assert 'aria-label="Block bob"' in missing and "Missing from the file" in missing

    ids = row_ids(app, batch_id)
    client.post(f"/admin/people/import/{batch_id}", data={
        "show": "all", "page": "1", f"row_{ids['eve']}": "add", f"row_{ids['bob']}": "block",
        "submit": "1"})
    wait_for_jobs(app)
    assert states(app) == {"ann": True, "bob": False, "cat": True, "dan": False, "eve": True}
    assert bob_client.get("/account").status_code == 302  # his session ended
    page = client.get(f"/admin/people/import/{batch_id}/result").get_data(as_text=True)
    assert "1 user missing from the file was blocked." in page
    assert "Blocked: missing from the file" in page
    with app.app_context():
        bob_id = db.session.scalar(select(User.id).where(User.username == "bob"))
    assert f'<a href="/admin/people/users/{bob_id}">bob</a>' in page  # the row names its user

    results = list(csv.reader(io.StringIO(client.get(
        f"/admin/people/import/{batch_id}/results.csv").get_data(as_text=True))))
    by_name = {row[1]: row for row in results[1:]}
    assert by_name["bob"] == ["", "bob", "block", "blocked", "Blocked: missing from the file."]
    assert by_name["cat"] == ["", "cat", "skip", "skipped", "Missing from the file; left active."]
    with app.app_context():
        bob = db.session.scalar(select(User).where(User.username == "bob"))
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "user_blocked"))
        boss = db.session.scalar(select(User.id).where(User.username == "boss"))
        assert (event.user_id, event.actor_id, event.detail) == (
            bob.id, boss, {"batch_id": batch_id, "missing_from_file": True})
    audit = client.get("/admin/system/audit").get_data(as_text=True)
    assert "missing from the imported file" in audit


def test_the_block_heading_selects_every_leaver_and_skip_none(app_factory):
    app, client = staff(app_factory)
    batch_id = batch_id_of(upload_listing(client))
    choose_all(client, batch_id, "block", submit=False)
    review = client.get(f"/admin/people/import/{batch_id}").get_data(as_text=True)
    assert 'data-selected="block">2</strong> to block' in review
    choose_all(client, batch_id, "add")  # Add ticked too: both apply
    wait_for_jobs(app)
    assert states(app) == {"ann": True, "bob": False, "cat": False, "dan": False, "eve": True}


def test_a_file_without_the_option_lists_nobody(app_factory):
    app, client = staff(app_factory)
    response = upload(client, FILE.encode())
    review = client.get(response.location).get_data(as_text=True)
    assert 'data-select-all="block"' not in review and "missing from it" not in review
    with app.app_context():
        assert db.session.scalar(select(ImportRow.id).where(
            ImportRow.proposed == ImportRow.MISSING)) is None


def test_a_failed_apply_blocks_nobody(app_factory):
    app, client = staff(app_factory)
    batch_id = batch_id_of(upload_listing(client))
    with app.app_context():  # bob became an administrator after the review
        db.session.execute(User.__table__.update().where(User.username == "bob")
                           .values(is_admin=True))
        db.session.commit()
    response = choose_all(client, batch_id, "add", "block")
    assert "became an administrator after this file was reviewed" in client.get(
        response.location).get_data(as_text=True)
    assert states(app) == {"ann": True, "cat": True, "dan": False}  # eve not added either
    with app.app_context():
        assert db.session.get(ImportBatch, batch_id).status == ImportBatch.FAILED


@pytest.mark.parametrize("background", [False, True])
def test_the_leavers_are_listed_again_when_the_file_is_read_again(app_factory, background):
    config = {"BACKGROUND_UPLOAD_KB": 0.01} if background else {}
    app, client = staff(app_factory, **config)
    response = upload_listing(client)
    wait_for_jobs(app)
    batch_id = int(re.search(r"/import/(\d+)", response.location).group(1))
    client.post(f"/admin/people/import/{batch_id}/options",  # the file is read again
                data={"change": "update_passwords"})
    with app.app_context():
        missing = db.session.scalars(select(ImportRow.username).where(
            ImportRow.batch_id == batch_id, ImportRow.proposed == ImportRow.MISSING)).all()
    assert sorted(missing) == ["bob", "cat"]


def test_the_command_line_lists_and_blocks_the_leavers(app_factory, tmp_path):
    app, _ = staff(app_factory)
    path = tmp_path / "staff.csv"
    path.write_text(FILE)
    runner = app.test_cli_runner()
    dry = runner.invoke(args=["people", "import", str(path), "--generate-passwords",
                              "--list-missing", "--dry-run"])
    assert "Missing from the file: 2 active users (bob, cat)." in dry.output
    refused = runner.invoke(args=["people", "import", str(path), "--actions", "add,block"])
    assert refused.exit_code == 1 and "add --list-missing" in refused.output
    done = runner.invoke(args=["people", "import", str(path), "--generate-passwords",
                               "--list-missing", "--actions", "add,block",
                               "--results", str(tmp_path / "results.csv")])
    assert done.exit_code == 0, done.output
    assert "2 users missing from the file blocked." in done.output
    assert states(app) == {"ann": True, "bob": False, "cat": False, "dan": False, "eve": True}
    assert '"","bob","block","blocked","Blocked: missing from the file."' in (
        tmp_path / "results.csv").read_text()


def test_a_leaver_blocked_meanwhile_is_left_as_it_is(app_factory):
    app, client = staff(app_factory)
    batch_id = batch_id_of(upload_listing(client))
    with app.app_context():
        cat = db.session.scalar(select(User.id).where(User.username == "cat"))
    client.post(f"/admin/people/users/{cat}/state", data={"block": "Block"})  # on its page
    choose_all(client, batch_id, "block")
    with app.app_context():
        assert db.session.get(ImportBatch, batch_id).result["blocked"] == 1  # bob only
        events = db.session.scalars(select(AuditEvent.detail).where(
            AuditEvent.action == "user_blocked", AuditEvent.user_id == cat)).all()
    assert events == [None]  # the page's event, no second one from the file
    assert states(app) == {"ann": True, "bob": False, "cat": False, "dan": False}
