"""Mail goes through Flask-Mail (issue 11 point 9): its Mail, Message and a subclass of its
Connection that adds what Flask-Mail 0.10 lacks (timeouts, checked TLS, the refused / maybe
accepted classification). The tests named `test_flask_mail_alone_…` show, on Flask-Mail itself,
what it cannot do unaided and why the subclass and `build_message` do it differently."""

from __future__ import annotations

import datetime
import ipaddress
import smtplib
import ssl
import time
from email.utils import parsedate_to_datetime

import flask_mail
import pytest
from conftest import import_file, login_admin, sample, wait_for_jobs
from smtpserver import parse_message, password_in, start_server
from sqlalchemy import select
from test_mailing import assert_invariant, drain, mail_config, make_csv

from bulkimport.extensions import db, mail
from bulkimport.mailing.sending import paused_reason
from bulkimport.mailing.transport import SendFailure, SMTPTransport, build_message
from bulkimport.models import Invitation

SENDER = "Example Intranet <noreply@people.example.org>"


def test_invitations_are_sent_by_flask_mail_with_text_and_html_alternatives(app_factory, smtp):
    controller, handler = smtp
    app = app_factory(**mail_config(controller, MAIL_DEFAULT_SENDER=SENDER))
    client = login_admin(app)
    with app.app_context(), mail.record_messages() as dispatched:
        import_file(client, sample("force-change.csv"))
        assert drain(app) == {"sent": 3}
    assert len(dispatched) == 3 and all(isinstance(m, flask_mail.Message) for m in dispatched)
    with app.app_context():
        assert isinstance(SMTPTransport(app.config), flask_mail.Connection)
    assert_invariant(app, handler)
    message_ids = set()
    for _, address, raw in handler.accepted:
        message = parse_message(raw)
        alternative = next(p for p in message.walk()
                           if p.get_content_type() == "multipart/alternative")
        assert [p.get_content_type() for p in alternative.iter_parts()] == [
            "text/plain", "text/html"]  # the preferred (HTML) last
        assert all(p.get_content_charset() == "utf-8" for p in alternative.iter_parts())
        assert message["To"] == address and "noreply@people.example.org" in message["From"]
        assert message["Subject"] == "Your Example Intranet account"
        sent = parsedate_to_datetime(message["Date"])
        assert abs(sent.timestamp() - time.time()) < 120 and sent.tzinfo is not None
        assert message["Message-ID"].endswith("@people.example.org>")  # not this host's name
        message_ids.add(message["Message-ID"])
        text = message.get_body(preferencelist=("plain",)).get_content()
        html = message.get_body(preferencelist=("html",)).get_content()
        assert password_in(raw) in text and password_in(raw) in html
    assert len(message_ids) == 3


def test_a_template_with_a_long_line_is_delivered(app_factory, smtp):
    from test_localisation import save

    controller, handler = smtp
    app = app_factory(**mail_config(controller))
    client = login_admin(app)
    long_html = "<p>" + "Welcome to the intranet. " * 80 + "</p><p>Password: {{ password }}</p>"
    assert save(client, html=long_html, text="Password: {{ password }}").status_code == 302
    import_file(client, make_csv(1))
    assert drain(app) == {"sent": 1}
    [(_, _, raw)] = handler.accepted
    html = parse_message(raw).get_body(preferencelist=("html",)).get_content()
    assert "Welcome to the intranet. " * 80 in html
    assert max(len(line) for line in raw.splitlines()) <= 998
    assert_invariant(app, handler)


def test_flask_mail_alone_sends_a_long_line_that_the_server_refuses(app_factory, smtp):
    controller, handler = smtp
    app = app_factory(**mail_config(controller))
    with app.app_context():
        message = flask_mail.Message("Long", recipients=["a@example.com"], body="text",
                                     html="<p>" + "x" * 1200 + "</p>")
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=5) as host, \
                pytest.raises(smtplib.SMTPDataError) as refused:
            host.sendmail("noreply@localhost", ["a@example.com"], message.as_bytes())
        assert refused.value.smtp_code == 500  # "Line too long"
        with SMTPTransport(app.config) as transport:  # ours: quoted-printable, short lines
            transport.send(build_message(sender="noreply@localhost", recipient="a@example.com",
                                         subject="Long", text="text",
                                         html="<p>" + "x" * 1200 + "</p>"))
    assert handler.count_for("a@example.com") == 1


def test_flask_mail_alone_cannot_address_a_non_ascii_local_part_nor_ss_domains():
    with pytest.raises(UnicodeEncodeError):  # even for a server that offers SMTPUTF8
        flask_mail.sanitize_address("josé@example.com")
    # Python's "idna" codec is IDNA 2003: straße.de becomes strasse.de, someone else's domain
    assert flask_mail.sanitize_address("a@straße.de") == "a@strasse.de"
    from bulkimport.mailing.transport import smtp_address

    assert smtp_address("a@straße.de") == "a@xn--strae-oqa.de"
    assert smtp_address("idn@bücher.de") == "idn@xn--bcher-kva.de"
    with pytest.raises(SendFailure) as refused:
        smtp_address("josé@example.com")
    assert refused.value.kind == "permanent" and not refused.value.maybe_accepted


def test_mail_debug_never_prints_the_message(app_factory, smtp, capfd):
    controller, handler = smtp
    app = app_factory(**mail_config(controller, MAIL_DEBUG=True, DEBUG=True))
    import_file(login_admin(app), make_csv(1))
    assert drain(app) == {"sent": 1}
    password = handler.last_password("mail000@example.com")
    captured = capfd.readouterr()
    assert password not in captured.out + captured.err


def _certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1; returns (certificate file, server context)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return cert_file, context


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_tls_modes_check_the_certificate(app_factory, tmp_path, monkeypatch, mode):
    cert_file, context = _certificate(tmp_path)
    options = {"tls_context": context} if mode == "starttls" else {"ssl_context": context}
    controller, handler = start_server(**options)
    try:
        app = app_factory(**mail_config(controller, MAIL_USE_TLS=mode == "starttls",
                                        MAIL_USE_SSL=mode == "tls"))
        client = login_admin(app)
        import_file(client, make_csv(1))
        wait_for_jobs(app)
        with app.app_context():  # a certificate nobody vouches for: paused, nothing sent
            assert db.session.scalar(select(Invitation.status)) == "queued"
            assert "TLS failed" in paused_reason() and "certificate verify failed" in (
                paused_reason())
            if mode == "starttls":  # Flask-Mail's own Connection would not have checked it
                flask_mail.Connection(app.extensions["mail"]).configure_host().quit()
        assert handler.accepted == []
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # now it is trusted
        client.post("/admin/system/mail/resume")
        assert drain(app) == {"sent": 1}
        assert_invariant(app, handler)
    finally:
        controller.stop()
