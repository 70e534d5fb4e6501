"""Sending invitations: claim a chunk; make a password (or a link to choose one) for each of
its invitations and commit them all as pending in one transaction; render and send each e-mail
over the chunk's one SMTP connection; record the outcomes ten at a time.

The invariant: for every invited user, the credential in the last e-mail the SMTP server
accepted works: the password logs in, or the link opens the set-password page. A new hash (or a
link's digest) is committed to `pending_hashes` before its e-mail is sent; it becomes the user's
password (or live link) once the server has accepted the e-mail, and it is dropped only when the
server certainly did not accept it (or the e-mail was never handed to it), or once a later
e-mail certainly was. So a crash, a timeout or a dropped connection at any point leaves every
possibly-accepted credential working; a crash between a 250 and the record of its group sends
that e-mail again, once the lease hands the invitation to another worker. Since only those
events may drop a credential, the number pending (each password costs every login a bcrypt
check) is bounded by making no new attempt once MAX_PENDING_HASHES are outstanding. These
functions own their transactions.
"""

from __future__ import annotations

import logging
import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import joinedload

from .. import password_links
from ..audit_trail import record_event
from ..background import Heartbeat, is_outage
from ..clock import clock
from ..extensions import db
from ..login_sessions import end_sessions_of
from ..models import Invitation, InviteMode, SetPasswordLink, SystemState, User, utcnow
from ..password_links import link_url, new_token
from ..password_policy import generate_password, load_policy
from ..security import hash_password
from .fairness import Due, fair_order
from .languages import invitation_template
from .templating import NotificationTemplate, RenderError, invitation_context, render
from .throttle import send_rate_limit
from .transport import CONFIG, PERMANENT, TEMPORARY, SendFailure, build_message, transport_for

log = logging.getLogger(__name__)
MAX_BATCHES_SEEN = 200  # batches with due invitations weighed per enqueue, oldest first

RECORD_EVERY = 10  # outcomes recorded per transaction; a crash may send these again
MAX_INLINE_WAIT = 20.0  # longer throttle waits hand the rest of the chunk back to the queue
MAX_BACKOFF = 3600.0
# E-mails that may have been accepted without our knowing, whose passwords must all keep
# working; at this many, the invitation is failed instead of tried again.
MAX_PENDING_HASHES = 3
BLOCKED_WAITING = "Waiting: the account is blocked; it is sent when the account is unblocked."


@dataclass
class Prepared:
    """One invitation of a chunk whose credential is committed as pending, ready to send: the
    secret (a password or a link's token) lives only here, in memory, until its e-mail is
    built."""

    invitation_id: int
    mode: InviteMode
    credential: str  # what `pending_hashes` holds: a bcrypt hash, or a link's digest
    expires: datetime
    recipient: str
    language: str | None
    context: dict  # the template's variables, the secret among them
    secret: str = ""  # to mask in the outbox's copy: the password, or the link's token


@dataclass
class Chunk:
    """What a worker holds of its chunk: prepared but not yet handed to the SMTP server
    (`unsent`: certainly not sent, so their credentials may be dropped), and handed to it but
    not yet recorded (`delivered`: recorded in groups of RECORD_EVERY)."""

    token: str
    unsent: dict[int, Prepared] = field(default_factory=dict)
    delivered: list[tuple[Prepared, SendFailure | None]] = field(default_factory=list)


def send_invitations(invitation_ids: list[int]) -> dict[str, int]:
    """Send the due invitations among `invitation_ids` that no other worker holds; returns how
    many ended sent, deferred (to be retried) and failed. A heartbeat renews the lease on the
    chunk while this works; if the database or Redis becomes unreachable, what was sent is
    recorded and the rest of the chunk handed back at once, due again shortly, for the sweep to
    enqueue once the part is back."""
    config = current_app.config
    token = uuid.uuid4().hex
    claimed = claim(invitation_ids, token)
    counts = {"sent": 0, "deferred": 0, "failed": 0}
    if not claimed:
        return counts
    if paused_reason():
        release(claimed, token, utcnow(), None)
        return counts
    held = set(claimed)  # what the last heartbeat found still ours
    chunk = Chunk(token)

    def renew() -> None:
        held.intersection_update(renew_leases(claimed, token))

    with Heartbeat(renew, config["MAIL_LEASE_SECONDS"] / 4, "mail-lease"):
        try:
            _send_chunk(claimed, chunk, held, counts)
        except Exception as exc:
            if not is_outage(exc):
                raise
            db.session.rollback()
            log.warning("Sending stopped: %s: %s; the chunk is handed back",
                        exc.__class__.__name__, exc)
            if not hand_back(claimed, chunk, counts):
                raise
    return counts


def _send_chunk(claimed: list[int], chunk: Chunk, held: set[int], counts: dict[str, int]) -> None:
    """The loop of `send_invitations` over one claimed chunk and one SMTP connection: every
    credential committed in one transaction before the first e-mail, the outcomes recorded in
    groups (a crash between a 250 and its record leaves a pending credential that works, and the
    lease hands the invitation to another worker)."""
    config = current_app.config
    throttle = send_rate_limit.current()
    cache: dict = {}  # the policy and the templates, read once per chunk
    timer = clock()  # the application's: tests move it instead of waiting
    prepared = _prepare(claimed, chunk.token, cache, counts)
    chunk.unsent = {item.invitation_id: item for item in prepared}
    with transport_for(config, current_app.instance_path) as transport:
        for item in prepared:
            if item.invitation_id not in held:
                continue  # taken over by another worker: not sent, its credential is dropped
            wait = throttle.reserve()
            while 0 < wait <= MAX_INLINE_WAIT:
                if wait > 5:
                    transport.close()  # do not hold an idle connection open
                timer.sleep(wait)
                wait = throttle.reserve()
            if wait > 0:
                _settle(chunk, counts, utcnow() + timedelta(seconds=wait), None)
                return
            del chunk.unsent[item.invitation_id]  # from here on, the e-mail may leave
            failure = _deliver(item, transport, cache)
            chunk.delivered.append((item, failure))
            if failure and failure.kind == CONFIG:
                _record_outcomes(chunk.delivered, chunk.token, counts)
                pause(failure.reason)
                db.session.commit()  # every process must see the pause at once
                _settle(chunk, counts, utcnow(), None)
                return
            if failure and failure.server_down:
                # the server is down: the rest of the chunk would fail the same way
                _settle(chunk, counts, utcnow() + timedelta(seconds=backoff(1)), failure.reason)
                return
            if len(chunk.delivered) >= RECORD_EVERY:
                _record_outcomes(chunk.delivered, chunk.token, counts)
    _settle(chunk, counts, utcnow(), None)


def _settle(chunk: Chunk, counts: dict[str, int], when, reason: str | None) -> None:
    """Record what was delivered, then give the unsent rest of the chunk back to the queue,
    due at `when`, their credentials dropped (never sent) and their attempts not counted."""
    _record_outcomes(chunk.delivered, chunk.token, counts)
    unsent = list(chunk.unsent.values())
    _drop_unsent(unsent)
    release([item.invitation_id for item in unsent], chunk.token, when, reason)
    chunk.unsent.clear()


def hand_back(claimed: list[int], chunk: Chunk, counts: dict[str, int]) -> bool:
    """After an outage of the database or Redis: record what was delivered and give back every
    invitation of the chunk still ours, due again after one sweep interval. Tried again with
    growing pauses while our lease lasts (the database may be restarting); False if it never
    worked, and then the lease runs out and the sweep takes them back. Credentials of e-mails
    that may have left stay pending."""
    config = current_app.config
    timer = clock()
    give_up = timer.monotonic() + config["MAIL_LEASE_SECONDS"]
    pause_seconds = 0.25
    while True:
        try:
            _record_outcomes(chunk.delivered, chunk.token, counts)
            _drop_unsent(list(chunk.unsent.values()))
            chunk.unsent.clear()
            release(claimed, chunk.token,
                    utcnow() + timedelta(seconds=config["MAIL_SWEEP_SECONDS"]),
                    "The database or the job queue could not be reached; it will be sent again.")
            return True
        except Exception as exc:
            db.session.rollback()
            if not is_outage(exc) or timer.monotonic() + pause_seconds >= give_up:
                log.warning("Could not hand the chunk back (%s); its lease will run out", exc)
                return False
        timer.sleep(pause_seconds)
        pause_seconds = min(pause_seconds * 2, 5.0)


def renew_leases(invitation_ids: list[int], token: str) -> set[int]:
    """Extend our lease on the invitations among `invitation_ids` that we still hold; returns
    their ids."""
    lease = utcnow() + timedelta(seconds=current_app.config["MAIL_LEASE_SECONDS"])
    owned = set(db.session.scalars(
        update(Invitation).where(Invitation.id.in_(invitation_ids),
                                 Invitation.lease_token == token,
                                 Invitation.status == Invitation.SENDING)
        .values(lease_until=lease).returning(Invitation.id)
        .execution_options(synchronize_session=False)))
    db.session.commit()
    return owned


def claim(invitation_ids: list[int], token: str) -> list[int]:
    """Mark the due, queued invitations among `invitation_ids` as ours (`sending`) and return
    their ids; rows another worker has locked are skipped (SKIP LOCKED on PostgreSQL)."""
    now = utcnow()
    lease = now + timedelta(seconds=current_app.config["MAIL_LEASE_SECONDS"])
    due = (select(Invitation.id).where(
        Invitation.id.in_(invitation_ids), Invitation.status == Invitation.QUEUED,
        Invitation.next_attempt_at <= now)
        .order_by(Invitation.id).with_for_update(skip_locked=True))
    claimed = db.session.scalars(
        update(Invitation)
        .where(Invitation.id.in_(due.scalar_subquery()), Invitation.status == Invitation.QUEUED)
        .values(status=Invitation.SENDING, lease_until=lease, lease_token=token)
        .returning(Invitation.id)
        .execution_options(synchronize_session=False)).all()
    db.session.commit()
    return sorted(claimed)


def release(invitation_ids: list[int], token: str, when, reason: str | None) -> None:
    """Give claimed invitations back to the queue, due at `when`, without an attempt."""
    if not invitation_ids:
        return
    values = {"status": Invitation.QUEUED, "next_attempt_at": when, "lease_until": None,
              "lease_token": None, "enqueued_at": None}
    if reason:
        values["last_error"] = reason
    db.session.execute(update(Invitation).where(
        Invitation.id.in_(invitation_ids), Invitation.lease_token == token)
        .values(**values).execution_options(synchronize_session=False))
    db.session.commit()


def send_one(invitation_id: int, token: str, transport,
             cache: dict | None = None) -> tuple[str, SendFailure | None]:
    """One attempt for one claimed invitation, in transactions of its own; returns (outcome,
    failure or None). `cache` keeps the password policy and the templates between calls."""
    cache = {} if cache is None else cache
    counts: dict[str, int] = {}
    settled: dict[int, tuple[str, SendFailure | None]] = {}
    prepared = _prepare([invitation_id], token, cache, counts, settled)
    if not prepared:
        return settled.get(invitation_id, ("deferred", None))
    failure = _deliver(prepared[0], transport, cache)
    return _record_outcomes([(prepared[0], failure)], token, counts)[0]


def _prepare(claimed: list[int], token: str, cache: dict, counts: dict[str, int],
             settled: dict[int, tuple[str, SendFailure | None]] | None = None
             ) -> list[Prepared]:
    """Make a credential for each claimed invitation still ours and commit them all as pending
    in one transaction, before any e-mail can leave. Passwords are hashed before that
    transaction, so that no row stays locked for the bcrypt work. Invitations of blocked users
    are held and those with too many undecided e-mails failed in the same transaction (their
    outcome counted, and put in `settled`)."""
    config = current_app.config
    session = db.session
    if "policy" not in cache:
        cache["policy"] = load_policy(session)
        if cache["policy"] in session:
            session.expunge(cache["policy"])  # detached: the commits below do not expire it
    policy = cache["policy"]
    people = session.execute(
        select(Invitation.id, Invitation.mode, User.username, User.firstname, User.surname,
               User.email, User.language, User.must_change_password)
        .join(Invitation.user)
        .where(Invitation.id.in_(claimed), Invitation.lease_token == token)).all()
    session.rollback()  # no transaction stays open while passwords are hashed
    now = utcnow()
    expires = now + timedelta(days=policy.temp_password_days)  # from sending, not the import
    made: dict[int, tuple[Prepared, str]] = {}  # id -> (prepared, the secret to mask)
    for person in people:
        if person.mode == InviteMode.LINK:
            secret, credential = new_token()
            password, set_password_url = "", link_url(secret)
        else:
            secret = password = generate_password(
                policy, username=person.username, firstname=person.firstname,
                surname=person.surname, email=person.email)
            credential, set_password_url = hash_password(password, config["BCRYPT_ROUNDS"]), ""
        context = invitation_context(
            username=person.username, firstname=person.firstname, surname=person.surname,
            email=person.email, language=person.language, password=password,
            set_password_url=set_password_url,
            login_url=config["BASE_URL"].rstrip("/") + "/login", site_name=config["SITE_NAME"],
            expires=expires, must_change_password=person.must_change_password,
            time_zone=config["TIME_ZONE"])
        made[person.id] = (Prepared(person.id, person.mode, credential, expires, person.email,
                                    person.language, context), secret)
    lease = utcnow() + timedelta(seconds=config["MAIL_LEASE_SECONDS"])
    ready: list[Prepared] = []
    rows = session.scalars(select(Invitation).options(joinedload(Invitation.user))
                           .where(Invitation.id.in_(list(made))).order_by(Invitation.id)
                           .with_for_update(of=Invitation)).unique().all()
    for invitation in rows:
        item, secret = made[invitation.id]
        if invitation.lease_token != token:
            continue  # our lease ran out and another worker took it over
        if not invitation.user.active:
            outcome = _hold_for_blocked(invitation)
        elif len(invitation.pending_hashes) >= MAX_PENDING_HASHES:
            outcome = _give_up_undecided(invitation)
        else:
            if item.mode == InviteMode.LINK:
                session.add(SetPasswordLink(digest=item.credential, user_id=invitation.user_id,
                                            invitation_id=invitation.id, expires_at=expires))
            invitation.pending_hashes = [*invitation.pending_hashes, item.credential]
            invitation.attempts += 1
            invitation.lease_until = lease
            item.secret = secret
            ready.append(item)
            continue
        counts[outcome[0]] = counts.get(outcome[0], 0) + 1
        if settled is not None:
            settled[invitation.id] = outcome
    session.commit()  # every credential is stored before any e-mail can leave
    for key in {(item.mode, item.language) for item in ready} - set(cache):
        cache[key] = invitation_template(session, key[1], key[0])
    session.rollback()  # read: the sending needs no database until its outcomes are recorded
    return ready


def _deliver(item: Prepared, transport, cache: dict) -> SendFailure | None:
    """Render and send one prepared invitation over the chunk's connection, with its template
    from `cache` (read by `_prepare`: no database work here); returns the failure, or None when
    the server accepted it. The secret leaves memory with the message."""
    secret, item.secret = item.secret, ""
    failure: SendFailure | None = None
    try:
        subject, html, text = render(cache[(item.mode, item.language)], item.context)
        message = build_message(sender=current_app.config["MAIL_DEFAULT_SENDER"],
                                recipient=item.recipient, subject=subject, text=text,
                                html=html, secret_values=(secret,))
    except RenderError as exc:
        failure = SendFailure(PERMANENT, f"The e-mail template cannot be rendered: {exc}")
    except SendFailure as exc:  # an address no SMTP exchange of ours can carry
        failure = exc
    except Exception as exc:  # a bad sender setting, an address the headers refuse
        failure = SendFailure(PERMANENT, f"The e-mail cannot be built: "
                              f"{exc.__class__.__name__}: {exc}")
    else:
        try:
            transport.send(message)
        except SendFailure as exc:
            failure = exc
        except Exception as exc:  # whatever it was, the message may have left
            transport.close()
            failure = SendFailure(TEMPORARY, "Unexpected error while sending: "
                                  f"{exc.__class__.__name__}", maybe_accepted=True)
    item.context.clear()  # the secret, in the variables, is not kept
    del secret
    return failure


def _record_outcomes(delivered: list[tuple[Prepared, SendFailure | None]], token: str,
                     counts: dict[str, int]) -> list[tuple[str, SendFailure | None]]:
    """Store what the delivered attempts did, in one transaction, and empty `delivered`;
    returns each (outcome, failure) and adds them to `counts`."""
    if not delivered:
        return []
    session = db.session
    ids = [item.invitation_id for item, _ in delivered]
    rows = {invitation.id: invitation for invitation in session.scalars(
        select(Invitation).options(joinedload(Invitation.user)).where(Invitation.id.in_(ids))
        .order_by(Invitation.id).with_for_update(of=Invitation)).unique()}
    links: list[tuple[int, str, list[str]]] = []  # accepted links, settled in one go
    results = [_apply_outcome(rows[item.invitation_id], token, item, failure, links)
               for item, failure in delivered]
    password_links.accept(session, links)
    session.commit()
    for (item, failure), (outcome, _) in zip(delivered, results, strict=True):
        counts[outcome] = counts.get(outcome, 0) + 1
        if failure is None:
            log.info("Invitation %s sent", item.invitation_id)
        else:
            log.info("Invitation %s not sent (%s): %s", item.invitation_id, failure.kind,
                     failure.reason)
    delivered.clear()
    return results


def _apply_outcome(invitation: Invitation, token: str, item: Prepared,
                   failure: SendFailure | None, links: list[tuple[int, str, list[str]]]
                   ) -> tuple[str, SendFailure | None]:
    """What one attempt with `item.credential` (a password's hash, or a link's digest) did, on
    the locked invitation; an accepted link is added to `links` for `password_links.accept`.
    The caller commits. The order of `pending_hashes` is the order of
    what may have reached the user: a success keeps the credentials after its own (attempts
    begun or accepted later), and a success that learns another worker took the invitation
    over moves its credential to the end instead of taking over the state."""
    config = current_app.config
    session = db.session
    credential = item.credential
    ours = invitation.lease_token == token
    pending = list(invitation.pending_hashes)
    if failure is None:
        if ours or invitation.status in (Invitation.QUEUED, Invitation.FAILED):
            later = pending[pending.index(credential) + 1:] if credential in pending else []
            if invitation.mode == InviteMode.LINK:
                links.append((invitation.user_id, credential, later))
            else:
                user = invitation.user
                user.password_hash = credential
                user.temp_password_expires_at = item.expires
            invitation.pending_hashes = later
            invitation.status, invitation.sent_at = Invitation.SENT, utcnow()
            invitation.last_error = None
            invitation.lease_until = invitation.lease_token = None
            record_event(session, "invitation_sent", user_id=invitation.user_id,
                         invitation_id=invitation.id, attempts=invitation.attempts)
        else:  # another worker holds it or has sent it: keep this credential working too
            invitation.pending_hashes = [h for h in pending if h != credential] + [credential]
            if invitation.mode == InviteMode.LINK:
                password_links.keep_working(session, credential)
        return "sent", None

    if not failure.maybe_accepted:
        invitation.pending_hashes = [h for h in pending if h != credential]
        if invitation.mode == InviteMode.LINK:
            password_links.refuse(session, credential)
    if not ours:  # another worker holds it now: its state is not ours to change
        return "deferred", failure
    invitation.last_error = failure.reason
    invitation.lease_until = invitation.lease_token = None
    outcome = "deferred"
    if failure.kind == PERMANENT:
        invitation.status, outcome = Invitation.FAILED, "failed"
    elif failure.kind == CONFIG:
        invitation.status, invitation.next_attempt_at = Invitation.QUEUED, utcnow()
        invitation.attempts -= 1  # our configuration failed, not this invitation
        invitation.enqueued_at = None
    else:
        delay = backoff(invitation.attempts)
        give_up = invitation.started_at + timedelta(hours=config["MAIL_GIVE_UP_HOURS"])
        if utcnow() + timedelta(seconds=delay) > give_up:
            invitation.status, outcome = Invitation.FAILED, "failed"
            invitation.last_error = (f"Gave up after {invitation.attempts} attempts: "
                                     f"{failure.reason}")
        else:
            invitation.status = Invitation.QUEUED
            invitation.next_attempt_at = utcnow() + timedelta(seconds=delay)
            invitation.enqueued_at = None
    if outcome == "failed":
        record_event(session, "invitation_failed", user_id=invitation.user_id,
                     invitation_id=invitation.id, reason=invitation.last_error)
    return outcome, failure


def _drop_unsent(unsent: list[Prepared]) -> None:
    """Take back the credentials of prepared invitations whose e-mail was never handed to the
    server (a throttle wait, a paused relay, the rest of a chunk after an outage): they are not
    pending, and the attempt does not count. Commits."""
    if not unsent:
        return
    session = db.session
    by_id = {item.invitation_id: item.credential for item in unsent}
    # whoever holds the invitation now, a credential that never left is not pending
    for invitation in session.scalars(select(Invitation).where(Invitation.id.in_(list(by_id)))
                                      .with_for_update()):
        credential = by_id[invitation.id]
        if credential in invitation.pending_hashes:
            invitation.pending_hashes = [h for h in invitation.pending_hashes
                                         if h != credential]
            invitation.attempts -= 1
    links = [item.credential for item in unsent if item.mode == InviteMode.LINK]
    if links:
        session.execute(delete(SetPasswordLink).where(SetPasswordLink.digest.in_(links))
                        .execution_options(synchronize_session=False))
    session.commit()
    for item in unsent:
        item.context.clear()
        item.secret = ""


def _hold_for_blocked(invitation: Invitation) -> tuple[str, SendFailure | None]:
    """Keep the invitation of a blocked user from being sent: it waits, due again at the end
    of its give-up window (unblocking makes it due at once), and fails then if the account is
    still blocked. No credential is made for it, and no attempt counted. The caller commits."""
    now = utcnow()
    give_up = invitation.started_at + timedelta(
        hours=current_app.config["MAIL_GIVE_UP_HOURS"])
    invitation.lease_until = invitation.lease_token = None
    if now >= give_up:
        reason = "Not sent: the account was blocked until the sending gave up."
        invitation.status, invitation.last_error = Invitation.FAILED, reason
        record_event(db.session, "invitation_failed", user_id=invitation.user_id,
                     invitation_id=invitation.id, reason=reason)
        outcome = "failed"
    else:
        invitation.status, invitation.next_attempt_at = Invitation.QUEUED, give_up
        invitation.enqueued_at = None
        invitation.last_error = BLOCKED_WAITING
        outcome = "deferred"
    log.info("Invitation %s of blocked user %s: %s", invitation.id, invitation.user_id, outcome)
    return outcome, None


def _give_up_undecided(invitation: Invitation) -> tuple[str, SendFailure]:
    """Fail an invitation that already has MAX_PENDING_HASHES e-mails the server may have
    accepted: another attempt would add a credential to keep working, and none of the earlier
    ones may be dropped while it may be the last one accepted. The caller commits."""
    what, ask = (("link", "open the link of the last one they received") if
                 invitation.mode == InviteMode.LINK else
                 ("password", "log in with the password of the last one they received"))
    failure = SendFailure(PERMANENT, (
        f"Not sent again: the mail server may have accepted {len(invitation.pending_hashes)} "
        f"earlier e-mails without confirming them, and the {what} in each of them works. Ask "
        f"the user to {ask} and choose a new password."))
    invitation.status, invitation.last_error = Invitation.FAILED, failure.reason
    invitation.lease_until = invitation.lease_token = None
    record_event(db.session, "invitation_failed", user_id=invitation.user_id,
                 invitation_id=invitation.id, reason=failure.reason)
    log.info("Invitation %s failed: %s", invitation.id, failure.reason)
    return "failed", failure


def backoff(attempts: int) -> float:
    """Seconds before the next try: doubling from MAIL_RETRY_SECONDS, capped at an hour, with
    ±20 % jitter so that many retries do not all come back at once."""
    base = current_app.config["MAIL_RETRY_SECONDS"]
    delay = min(base * 2 ** max(attempts - 1, 0), MAX_BACKOFF)
    return delay * random.uniform(0.8, 1.2)


def send_test_message(template: NotificationTemplate, context: dict, recipient: str) -> None:
    """Render `template` with `context` and send it to `recipient` now, over the configured
    transport and under the shared send-rate limit, as the template editor's test e-mail;
    raises RenderError or SendFailure with the reason."""
    config = current_app.config
    subject, html, text = render(template, context)
    message = build_message(sender=config["MAIL_DEFAULT_SENDER"], recipient=recipient,
                            subject=f"[Test] {subject}", text=text, html=html,
                            secret_values=(context.get("password", ""),))
    wait = send_rate_limit.current().reserve()
    if wait > 0:
        raise SendFailure(TEMPORARY, f"The send-rate limit is reached; try again in "
                          f"{math.ceil(wait)} seconds.")
    with transport_for(config, current_app.instance_path) as transport:
        transport.send(message)


def paused_reason() -> str | None:
    """Why sending is paused (the relay refused our login or TLS), or None."""
    state = db.session.get(SystemState, SystemState.MAIL_PAUSED)
    return state.value if state else None


def pause(reason: str) -> None:
    """Stop all sending until a test connection succeeds; every admin page shows `reason`.
    The caller commits."""
    state = db.session.get(SystemState, SystemState.MAIL_PAUSED)
    if state is None:
        db.session.add(SystemState(key=SystemState.MAIL_PAUSED, value=reason))
    else:
        state.value = reason
    log.error("Sending paused: %s", reason)


def try_resume() -> bool:
    """If sending is paused, test the SMTP connection and resume when it works; the caller
    commits what it records (paused again, or resumed)."""
    if not paused_reason():
        return True
    transport = transport_for(current_app.config, current_app.instance_path)
    try:
        if hasattr(transport, "open"):
            transport.open()
        transport.close()
    except SendFailure as failure:
        if failure.kind == CONFIG:
            pause(failure.reason)
        return False
    db.session.execute(
        SystemState.__table__.delete().where(SystemState.key == SystemState.MAIL_PAUSED))
    log.info("Sending resumed: the SMTP server accepts our connection again")
    return True


def release_expired_leases() -> int:
    """Return invitations held by a worker that stopped (killed, crashed) to the queue; their
    pending hashes stay, since an e-mail may have left before the worker died."""
    now = utcnow()
    result = db.session.execute(update(Invitation).where(
        Invitation.status == Invitation.SENDING, Invitation.lease_until < now)
        .values(status=Invitation.QUEUED, next_attempt_at=now, lease_until=None,
                lease_token=None, enqueued_at=None,
                last_error="The worker sending it stopped; it will be sent again.")
        .execution_options(synchronize_session=False))
    db.session.commit()
    return result.rowcount


def take_due_for_enqueue(limit: int, chunk: int) -> list[int]:
    """Ids of at most `limit` due, queued invitations that no job carries (never enqueued, handed
    back, or found lost by `forget_lost_jobs`), in the fair order (`mailing.fairness`): resends
    and small imports first, then the imports in turn; marked as enqueued now."""
    if limit <= 0:
        return []
    now = utcnow()
    due = (Invitation.status == Invitation.QUEUED, Invitation.next_attempt_at <= now,
           Invitation.enqueued_at.is_(None))
    # The oldest due invitations of each batch (at most `limit` each), so that a batch submitted
    # after a bulk run of 100,000 is seen at once, not after them.
    batches = db.session.execute(
        select(Invitation.batch_id).where(*due).group_by(Invitation.batch_id)
        .order_by(func.min(Invitation.id)).limit(MAX_BATCHES_SEEN)).scalars().all()
    candidates = []
    for batch_id in batches:
        same = Invitation.batch_id.is_(None) if batch_id is None \
            else Invitation.batch_id == batch_id
        candidates += db.session.execute(
            select(Invitation.id, Invitation.batch_id,
                   Invitation.resent)
            .where(*due, same).order_by(Invitation.id).limit(limit)).all()
    if not candidates:
        db.session.rollback()
        return []
    batch_ids = {batch_id for _, batch_id, _ in candidates if batch_id is not None}
    sizes = dict(db.session.execute(
        select(Invitation.batch_id, func.count()).where(Invitation.batch_id.in_(batch_ids))
        .group_by(Invitation.batch_id)).all()) if batch_ids else {}
    small = current_app.config["MAIL_SMALL_BATCH"]
    order = fair_order([Due(id_, batch_id, bool(resent) or sizes.get(batch_id, 0) <= small)
                        for id_, batch_id, resent in candidates], limit, chunk)
    # Marked one statement for all; a row another sweep took meanwhile is not returned.
    taken = set(db.session.scalars(
        update(Invitation).where(Invitation.id.in_(order), Invitation.enqueued_at.is_(None),
                                 Invitation.status == Invitation.QUEUED)
        .values(enqueued_at=now).returning(Invitation.id)
        .execution_options(synchronize_session=False)).all())
    db.session.commit()
    return [id_ for id_ in order if id_ in taken]


def in_the_queue() -> int:
    """Invitations handed to the workers and not finished: enqueued and waiting, or sending."""
    return db.session.scalar(select(func.count()).select_from(Invitation).where(
        ((Invitation.status == Invitation.QUEUED) & Invitation.enqueued_at.is_not(None))
        | (Invitation.status == Invitation.SENDING))) or 0


def forget_lost_jobs(carried: Callable[[], set[int] | None], older_than: datetime,
                     limit: int = 100_000) -> int:
    """Mark due, queued invitations recorded as enqueued before `older_than` but carried by no
    live job (`carried()` reads the queue; None when it cannot) as carried by none, so that the
    next `take_due_for_enqueue` takes them; returns how many. This finds a lost job (Redis lost
    its data, the job failed while the database was unreachable) in seconds, not a lease."""
    now = utcnow()
    enqueued = db.session.scalars(select(Invitation.id).where(
        Invitation.status == Invitation.QUEUED, Invitation.next_attempt_at <= now,
        Invitation.enqueued_at < older_than).order_by(Invitation.id).limit(limit)).all()
    db.session.rollback()  # no transaction stays open while the queue is read
    if not enqueued:
        return 0
    live = carried()
    if live is None:
        return 0
    lost = [i for i in enqueued if i not in live]
    for start in range(0, len(lost), 10_000):
        db.session.execute(update(Invitation).where(
            Invitation.id.in_(lost[start:start + 10_000]), Invitation.status == Invitation.QUEUED,
            Invitation.enqueued_at < older_than)
            .values(enqueued_at=None).execution_options(synchronize_session=False))
    db.session.commit()
    return len(lost)


def resend(invitation_ids: list[int] | None = None, *, batch_id: int | None = None,
           failed_only: bool = False, actor_id: int | None = None) -> int:
    """Queue invitations again for a new password (the old one stops working once the new
    e-mail is accepted): the given ones, or all failed ones, optionally of one batch, in one
    set-based statement. Invitations being sent right now are left alone. Every session of
    their users ends: the password that opened them is being replaced. The caller commits."""
    now = utcnow()
    query = update(Invitation).where(Invitation.status != Invitation.SENDING)
    if invitation_ids is not None:
        query = query.where(Invitation.id.in_(invitation_ids))
    if batch_id is not None:
        query = query.where(Invitation.batch_id == batch_id)
    if failed_only:
        query = query.where(Invitation.status == Invitation.FAILED)
    user_ids = db.session.scalars(
        query.values(status=Invitation.QUEUED, started_at=now, next_attempt_at=now,
                     scheduled_at=None, enqueued_at=None, last_error=None, sent_at=None)
        .returning(Invitation.user_id)
        .execution_options(synchronize_session=False)).all()
    if user_ids:
        end_sessions_of(db.session, user_ids)
        record_event(db.session, "invitations_resent", actor_id=actor_id, count=len(user_ids),
                     batch_id=batch_id, failed_only=failed_only,
                     invitation_ids=(invitation_ids or [])[:100])
    return len(user_ids)
