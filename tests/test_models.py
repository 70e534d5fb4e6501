"""Statuses are enums in the models and CHECK constraints in the database: a value outside the
enum is refused by the database itself, whoever writes it."""

from __future__ import annotations

import pytest
from conftest import import_file, sample
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, StatementError

from bulkimport.extensions import db
from bulkimport.models import (
    BatchStatus,
    ImportBatch,
    ImportRow,
    Invitation,
    InvitationStatus,
    ProfileField,
    TemplateVersion,
)

STATUS_COLUMNS = [("import_batches", "status"), ("import_rows", "proposed"),
                  ("import_rows", "choice"), ("import_rows", "outcome"),
                  ("invitations", "status")]


@pytest.mark.parametrize(("table", "column"), STATUS_COLUMNS)
def test_the_database_refuses_a_status_outside_the_enum(app, client, table, column):
    import_file(client, sample("minimal.csv"), "add")
    with app.app_context():
        with pytest.raises(IntegrityError):
            db.session.execute(text(f"UPDATE {table} SET {column} = 'bogus'"))
            db.session.flush()
        db.session.rollback()


@pytest.mark.parametrize(("model", "attribute"), [
    (ImportBatch, "status"), (ImportRow, "choice"), (Invitation, "status"),
    (TemplateVersion, "kind"), (ProfileField, "type")])
def test_the_models_refuse_a_value_outside_the_enum(app, model, attribute):
    with app.app_context():
        with pytest.raises(StatementError):
            db.session.execute(model.__table__.update().values({attribute: "bogus"}))
        db.session.rollback()


def test_statuses_load_as_enum_members_equal_to_their_text(app, client):
    batch_id = import_file(client, sample("minimal.csv"), "add")
    with app.app_context():
        batch = db.session.get(ImportBatch, batch_id)
        assert batch.status is BatchStatus.APPLIED and batch.status == "applied"
        statuses = set(db.session.scalars(select(Invitation.status)))
        assert statuses <= set(InvitationStatus) and all(isinstance(s, InvitationStatus)
                                                         for s in statuses)
