"""Addresses a relay without SMTPUTF8 cannot take as they are (issue 13 point 6): an
internationalised domain goes as punycode; a non-ASCII local part is refused at import and, if
one is stored anyway, fails at once as certainly not sent. Every failure before DATA is "not
sent" (its password is dropped), and an invitation keeps at most MAX_PENDING_HASHES passwords
whose e-mail may have been accepted."""

from __future__ import annotations

from unittest import mock

import pytest
from conftest import authenticate, batch_id_of, import_file, login_admin, upload
from smtpserver import parse_message, password_in, start_server
from sqlalchemy import select, update
from test_mailing import assert_invariant, drain, mail_config, make_csv

from bulkimport.extensions import db
from bulkimport.mailing import sending
from bulkimport.mailing.transport import SMTPTransport
from bulkimport.models import Invitation, User, fold_key

IDN_CSV = ("username,firstname,surname,email\n"
           "idn,Ida,Domain,idn@bücher.de\n"
           "sharp,Sven,Strasse,s@straße.de\n").encode()


def test_an_internationalised_domain_is_sent_as_punycode(app_factory, smtp):
    controller, handler = smtp
    app = app_factory(**mail_config(controller, MAIL_GIVE_UP_HOURS=2 / 3600))
    import_file(login_admin(app), IDN_CSV)
    assert drain(app) == {"sent": 2}
    assert sorted(address for _, address, _ in handler.accepted) == [
        "idn@xn--bcher-kva.de", "s@xn--strae-oqa.de"]  # IDNA 2008: not strasse.de
    usernames = {"idn@xn--bcher-kva.de": "idn", "s@xn--strae-oqa.de": "sharp"}
    with app.app_context():
        for _, address, raw in handler.accepted:
            message = parse_message(raw)
            assert message["To"] == address and not message.defects
            assert authenticate(db.session, usernames[address], password_in(raw)) is not None
            db.session.rollback()
        assert all(i.attempts == 1 and i.pending_hashes == []
                   for i in db.session.scalars(select(Invitation)))


def _stored_anyway(app, client, address: str) -> int:
    """Import mail000, then give it `address` behind validation's back (data from before it
    refused such addresses); returns the invitation id."""
    with mock.patch("bulkimport.importing.submission.wake"):
        import_file(client, make_csv(1))
    with app.app_context():
        db.session.execute(update(User).where(User.username == "mail000").values(
            email=address, email_key=fold_key(address)))
        db.session.commit()
        return db.session.scalar(select(Invitation.id))


@pytest.mark.parametrize("smtputf8", [False, True])
def test_a_non_ascii_local_part_fails_at_once_as_not_sent(app_factory, smtputf8):
    controller, handler = start_server(enable_SMTPUTF8=smtputf8)
    try:
        app = app_factory(**mail_config(controller, MAIL_GIVE_UP_HOURS=2 / 3600))
        _stored_anyway(app, login_admin(app), "josé@example.com")
        assert drain(app) == {"failed": 1}
        with app.app_context():
            invitation = db.session.scalar(select(Invitation))
            assert invitation.attempts == 1 and invitation.pending_hashes == []
            assert invitation.last_error.startswith(
                "Not sent: the address josé@example.com has characters that are not plain ASCII")
        assert handler.accepted == []
    finally:
        controller.stop()


def test_the_import_refuses_a_non_ascii_local_part_with_a_clear_message(client):
    batch_id = batch_id_of(upload(client, "username,firstname,surname,email\n"
                                          "jose,José,Díaz,josé@example.com\n".encode()))
    page = client.get(f"/admin/people/import/{batch_id}").get_data(as_text=True)
    assert ("has characters other than plain ASCII letters, digits and punctuation before "
            "the @") in page


def test_the_outbox_writes_an_internationalised_domain_as_a_valid_header(app_factory):
    app = app_factory(MAIL_SERVER="")
    import_file(login_admin(app), IDN_CSV)
    assert drain(app) == {"sent": 2}
    from pathlib import Path

    files = sorted((Path(app.instance_path) / "outbox").glob("*.eml"))
    to = sorted(str(parse_message(f.read_bytes())["To"].addresses[0].domain) for f in files)
    assert to == ["xn--bcher-kva.de", "xn--strae-oqa.de"]
    for f in files:
        assert f.read_bytes().isascii() and not parse_message(f.read_bytes()).defects


def test_a_connection_lost_before_data_is_not_sent_and_keeps_no_password(app_factory, smtp):
    controller, handler = smtp
    handler.rules["mail000@example.com"] = ["droprcpt"]
    app = app_factory(**mail_config(controller))
    invitation_id = _stored_anyway(app, login_admin(app), "mail000@example.com")
    with app.app_context():
        assert sending.claim([invitation_id], "worker") == [invitation_id]
        with SMTPTransport(app.config) as transport:
            outcome, failure = sending.send_one(invitation_id, "worker", transport)
        assert outcome == "deferred" and failure.kind == "temporary"
        assert not failure.maybe_accepted
        assert failure.reason.startswith("The connection was lost before the message was "
                                         "handed over")
        assert db.session.get(Invitation, invitation_id).pending_hashes == []
    assert drain(app) == {"sent": 1}
    assert handler.count_for("mail000@example.com") == 1
    assert_invariant(app, handler)


def test_at_most_three_passwords_wait_for_an_unconfirmed_e_mail(app_factory, smtp):
    controller, handler = smtp
    # the server takes each message and drops the connection before saying so
    handler.rules["mail000@example.com"] = ["drop"] * 6
    app = app_factory(**mail_config(controller))
    client = login_admin(app)
    import_file(client, make_csv(1))
    assert drain(app) == {"failed": 1}
    assert handler.count_for("mail000@example.com") == sending.MAX_PENDING_HASHES == 3
    assert_invariant(app, handler)  # the last accepted password works
    with app.app_context():
        invitation = db.session.scalar(select(Invitation))
        assert len(invitation.pending_hashes) == 3 and invitation.attempts == 3
        assert invitation.last_error.startswith(
            "Not sent again: the mail server may have accepted 3 earlier e-mails")
        for _, _, raw in handler.accepted:  # any of them may be the one the user reads last
            assert authenticate(db.session, "mail000", password_in(raw)) is not None
            db.session.rollback()
        invitation_id = invitation.id
    # Resend cannot add a fourth: none of the three may be dropped while it may be the last
    client.post("/admin/people/invitations/resend", data={"one": str(invitation_id),
                                                          "confirm": "1"})
    assert drain(app) == {"failed": 1}
    assert handler.count_for("mail000@example.com") == 3
