"""The fair order of due invitations: resends and small imports first, bulk imports in turn."""

from __future__ import annotations

import pytest

from bulkimport.mailing.fairness import Due, fair_order


def bulk(batch: int, first: int, count: int) -> list[Due]:
    return [Due(i, batch, False) for i in range(first, first + count)]


CASES = {
    "a small import goes before a bulk run queued earlier": (
        bulk(1, 1, 6) + [Due(100, 2, True), Due(101, 2, True)], 4, 2, [100, 101, 1, 2]),
    "two bulk runs take turns a chunk each": (
        bulk(1, 1, 4) + bulk(2, 10, 4), 8, 2, [1, 2, 10, 11, 3, 4, 12, 13]),
    "a resend goes first": (bulk(1, 1, 3) + [Due(50, None, True)], 2, 2, [50, 1]),
    "the limit cuts": (bulk(1, 1, 10), 3, 2, [1, 2, 3]),
    "nothing due": ([], 5, 2, []),
    "an older batch starts its turn first": (bulk(7, 20, 2) + bulk(3, 30, 2), 4, 1,
                                             [20, 30, 21, 31]),
}


@pytest.mark.parametrize(("due", "limit", "chunk", "expected"), CASES.values(), ids=CASES.keys())
def test_fair_order(due, limit, chunk, expected):
    assert fair_order(due, limit, chunk) == expected


def _batch_with_invitations(app, name: str, count: int, clock_now) -> tuple[int, list[int]]:
    """A batch of `count` new users with a due invitation each, written as an apply would."""
    from conftest import add_users
    from sqlalchemy import insert, select

    from bulkimport.extensions import db
    from bulkimport.models import ImportBatch, Invitation, User

    add_users(app, [{"username": f"{name}{i}", "firstname": "F", "surname": "S",
                     "email": f"{name}{i}@example.com"} for i in range(count)])
    with app.app_context():
        owner = db.session.scalar(select(User.id).order_by(User.id).limit(1))
        batch = ImportBatch(owner_id=owner, filename=f"{name}.csv", sha256="0" * 64, size=1,
                            encoding="utf-8", delimiter=",", columns=[], counts={},
                            expires_at=clock_now(), status=ImportBatch.APPLIED)
        db.session.add(batch)
        db.session.flush()
        users = db.session.scalars(select(User.id).where(User.username.like(f"{name}%"))
                                   .order_by(User.id)).all()
        db.session.execute(insert(Invitation), [
            {"user_id": u, "batch_id": batch.id, "status": Invitation.QUEUED,
             "created_at": clock_now(), "started_at": clock_now(),
             "next_attempt_at": clock_now()} for u in users])
        db.session.commit()
        ids = db.session.scalars(select(Invitation.id).where(Invitation.batch_id == batch.id)
                                 .order_by(Invitation.id)).all()
        return batch.id, list(ids)


def test_a_small_import_after_a_bulk_one_gets_its_turn_within_a_minute(app_factory,
                                                                       monkeypatch):
    """At 60 e-mails a minute, a 2-row import submitted after a 2,000-row one waits for at most
    MAIL_QUEUE_AHEAD (30) e-mails of it: well within a minute, not 33 minutes."""
    from sqlalchemy import update

    from bulkimport.clock import utcnow
    from bulkimport.extensions import db
    from bulkimport.mailing import dispatch
    from bulkimport.models import Invitation

    app = app_factory(MAIL_RATE_PER_MINUTE=60, MAIL_QUEUE_AHEAD=30, MAIL_CHUNK_SIZE=50)
    handed: list[list[int]] = []
    monkeypatch.setattr(dispatch, "enqueue", lambda name, *ids: handed.append(list(ids)))
    with app.app_context():
        now = utcnow
    _, bulk_ids = _batch_with_invitations(app, "bulk", 2000, now)
    with app.app_context():
        dispatch.wake()
    assert sum(map(len, handed)) == 30 and max(map(len, handed)) == 15  # the window, in chunks
    _, small_ids = _batch_with_invitations(app, "small", 2, now)
    with app.app_context():  # the workers finish what they were handed, then top up
        db.session.execute(update(Invitation).where(Invitation.id.in_(handed[0] + handed[1]))
                           .values(status=Invitation.SENT))
        db.session.commit()
        before = len(handed)
        dispatch.wake()
    assert handed[before][:2] == small_ids  # the small import's turn comes first
    ahead = len([i for chunk in handed[:before] for i in chunk])
    assert ahead <= 30  # e-mails of the bulk run sent before it: half a minute at 60 a minute
    assert all(i in bulk_ids for chunk in handed[before:] for i in chunk[2:])


def test_the_estimate_counts_the_other_imports_that_share_the_rate(app_factory):
    from bulkimport.clock import utcnow
    from bulkimport.mailing.status import invitation_counts, progress

    app = app_factory(MAIL_RATE_PER_MINUTE=60, MAIL_QUEUE_AHEAD=30, MAIL_SMALL_BATCH=50)
    bulk, _ = _batch_with_invitations(app, "bulk", 600, utcnow)
    other, _ = _batch_with_invitations(app, "other", 300, utcnow)
    small, _ = _batch_with_invitations(app, "small", 2, utcnow)
    with app.app_context():
        def estimate(batch_id):
            return progress(invitation_counts(batch_id), None, batch_id)["estimate"]

        # 2 of its own and at most the 30 of the window before it: a minute, not 15; the 600 +
        # 300 of the others are named as waiting too
        assert estimate(small) == (
            "About 1 minute left: 900 e-mails of 2 other imports are waiting too, and this one "
            "is sent ahead of bulk imports; the send-rate limit of 60 a minute is shared by all.")
        # 600 of its own, sent in turn with the 300 + 2 of the others: 902 e-mails, 16 minutes
        assert estimate(bulk).startswith("About 16 minutes left: 302 e-mails of 2 other imports")
        assert "sent in turn with them" in estimate(bulk)
