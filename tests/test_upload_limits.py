"""Bounds on what one upload, and one administrator, can make the server hold (issue 13, point
7): a column limit refused with a message naming it, Import history that never loads the column
lists of batches, and at most BULKIMPORT_MAX_STAGED_BATCHES unsubmitted uploads per
administrator."""

from __future__ import annotations

import time

import pytest
from conftest import batch_id_of, login_admin, upload
from sqlalchemy import event, func, select

from bulkimport.extensions import db
from bulkimport.models import ImportBatch, ImportRow

REQUIRED = ["username", "firstname", "surname", "email"]


def wide_csv(columns: int, *, row_fields: int | None = None) -> bytes:
    """A file with `columns` headings (the required four, then extra ones) and two users; the
    second row has `row_fields` fields when given."""
    headings = REQUIRED + [f"extra{i}" for i in range(columns - len(REQUIRED))]
    first = ["ann", "Ann", "Lee", "ann@example.com"] + ["x"] * (columns - len(REQUIRED))
    second = ["bob", "Bob", "Ray", "bob@example.com"]
    second += ["y"] * ((row_fields or columns) - len(REQUIRED))
    return "\n".join(",".join(line) for line in (headings, first, second)).encode() + b"\n"


def staged_batches(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(ImportBatch.id)))


@pytest.mark.parametrize("columns,row_fields,limit,message", [
    (201, None, None, "Line 1: the heading line has 201 columns; at most 200 columns"),
    (200_000, None, None, "Line 1: the heading line has 200,000 columns; at most 200 columns"),
    (5, 200_000, None, "Line 3: the line has 200,000 fields; at most 200 columns"),
    (11, None, 10, "Line 1: the heading line has 11 columns; at most 10 columns"),
])
def test_a_file_wider_than_the_limit_is_refused_naming_it(app_factory, columns, row_fields,
                                                           limit, message):
    # read in the request, where the refusal is shown on the form (a background reading
    # refuses it the same way: tests/test_background_reading.py)
    app = app_factory(BACKGROUND_UPLOAD_KB=0, **({"MAX_COLUMNS": limit} if limit else {}))
    client = login_admin(app)
    data = wide_csv(columns, row_fields=row_fields)
    started = time.perf_counter()
    response = upload(client, data)
    elapsed = time.perf_counter() - started
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in page and "BULKIMPORT_MAX_COLUMNS" in page
    assert len(page) < 100_000 and elapsed < 5  # was 23.5 s and 29.5 MB of HTML
    assert staged_batches(app) == 0


def test_a_file_at_the_limit_is_staged(app, client):
    response = upload(client, wide_csv(200))
    batch_id = batch_id_of(response)
    assert response.location.endswith(f"/import/{batch_id}/columns")  # 196 columns to decide
    page = client.get(response.location).get_data(as_text=True)
    assert 'data-heading="extra195"' in page


def test_import_history_never_loads_the_column_lists(app_factory):
    app = app_factory()
    first, second = login_admin(app, "boss"), login_admin(app, "chief")
    for client in (first, second, first):
        batch_id_of(upload(client, wide_csv(150)))
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        response = first.get("/admin/people/imports")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert page.count("data-batch=") == 3 and "extra1" not in page
    # (the page count wraps the query in SELECT count(*), which reads no column)
    loads = [s for s in statements if "FROM import_batches" in s
             and not s.startswith("SELECT count(*)")]
    assert loads and not any("import_batches.columns" in s for s in loads)


def test_a_new_upload_discards_the_oldest_beyond_the_limit_and_says_so(app_factory):
    app = app_factory(MAX_STAGED_BATCHES=3)
    client, other = login_admin(app, "boss"), login_admin(app, "chief")
    theirs = batch_id_of(upload(other, wide_csv(4), "theirs.csv"))
    mine = [batch_id_of(upload(client, wide_csv(4), f"file{i}.csv")) for i in range(3)]
    response = upload(client, wide_csv(4), "file3.csv")
    newest = batch_id_of(response)
    page = client.get(response.location).get_data(as_text=True)
    assert f"Your unsubmitted upload “file0.csv” (#{mine[0]}) was discarded: at most 3" in page

    with app.app_context():
        status = dict(db.session.execute(select(ImportBatch.id, ImportBatch.status)).all())
        rows = dict(db.session.execute(select(ImportRow.batch_id, func.count())
                                       .group_by(ImportRow.batch_id)).all())
    assert status == {theirs: "staged", mine[0]: "expired", mine[1]: "staged",
                      mine[2]: "staged", newest: "staged"}
    assert mine[0] not in rows and rows[newest] == 2 and rows[theirs] == 2
    assert "expired" in client.get(f"/admin/people/import/{mine[0]}/result").get_data(
        as_text=True)

    # a refused file discards nothing
    assert upload(client, b'username,"firstname\nann,"Ann\n').status_code == 422
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(
            ImportBatch.status == "staged")) == 4
