"""The mail outbox: queue in the caller's transaction, send after its commit, sweep
what is left. See the package docstring (taskforce/mail/__init__.py) for the API.

Sending one row (`send`)
    Claimed first by a conditional UPDATE, committed (claimed_until = now +
    CLAIM_SECONDS where still unsent, due and unclaimed or its claim lapsed): a
    rowcount of 0 means someone else has it or it is done, and it is skipped. Then
    `send_mail` (the SMTP relay), then `sent_at`. A failure counts an attempt, keeps
    the error, releases the claim and sets `next_try_at` (RETRY_BASE_SECONDS doubling,
    at most RETRY_MAX_SECONDS); after ATTEMPTS_MAX it is no longer tried (logged at
    error level, counted by `outbox_status`). A relay that cannot be reached ends
    the batch: the rest are left as they were for the sweep, not each waited for.
"""
from __future__ import annotations

import logging
import smtplib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import delete, event, func, or_, select, update
from sqlalchemy.orm import Session, SessionTransaction

from taskforce.accounts.models import utcnow
from taskforce.extensions import db
from taskforce.mail.models import ERROR_MAX, OutgoingMail

log = logging.getLogger(__name__)

__all__ = ["outbox_status", "queue", "send", "send_mail", "sweep"]

CLAIM_SECONDS = 60  # longer than an SMTP exchange can take (10 s timeouts per step)
ATTEMPTS_MAX = 150  # ~a day of a relay down (backoff below) before a person must look
RETRY_BASE_SECONDS = 15
RETRY_MAX_SECONDS = 600
SWEEP_AFTER_SECONDS = 10.0  # the fast path's head start: the sweep leaves younger rows alone
SWEEP_BATCH = 100
KEEP_SENT_DAYS = 30
ABOUT_MAX = 32
SUBJECT_MAX = 255
# Publishing the send job: a blip is retried briefly, a broker that is down is not
# waited for (the request would wait): the rows are committed and the sweep sends them.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2,
                 "interval_max": 0.2}
# The relay answered and refused this one message: the next may still go.
_REFUSED = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)

_QUEUED = "mail_outbox_queued"  # Session.info: [(row, now)] queued, not flushed yet
_FLUSHED = "mail_outbox_flushed"  # Session.info: {now: [ids]} written in this transaction


# --------------------------------------------------------------------------- the relay

def send_mail(*, to: Iterable[str], subject: str, body: str) -> EmailMessage:
    """Hand one message to the SMTP relay (SMTP_HOST, SMTP_PORT; from MAIL_FROM). With no
    SMTP_HOST it is only logged. Raises what smtplib raises: the caller records it."""
    cfg = current_app.config
    msg = EmailMessage()
    msg["From"] = cfg["MAIL_FROM"]
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg.set_content(body)
    if not cfg["SMTP_HOST"]:
        log.info("mail (no SMTP_HOST set, not sent): to=%s subject=%s", msg["To"], subject)
        return msg
    with smtplib.SMTP(cfg["SMTP_HOST"], cfg["SMTP_PORT"], timeout=10) as smtp:
        smtp.send_message(msg)
    return msg


# --------------------------------------------------------------------------- queueing

def queue(to: str | Iterable[str], subject: str, body: str, *, about: str,
          now: bool = False) -> list[OutgoingMail]:
    """Add one outbox row per address (lowercased, each once) to the current session,
    in the caller's transaction; nothing is sent unless and until it commits.

    `now=True`: after the commit this process sends them itself, at once (a caller
    already in a worker job, whose mail is due within seconds). `now=False`: after
    the commit a job (tasks.send_queued) sends them, so a web request does not wait
    for the relay. Either way the sweep sends what that missed."""
    if not about or len(about) > ABOUT_MAX:
        raise ValueError(f"about: a short label (1 to {ABOUT_MAX} characters)")
    if len(subject) > SUBJECT_MAX:
        raise ValueError(f"subject: at most {SUBJECT_MAX} characters")
    addresses = [to] if isinstance(to, str) else list(to)
    wanted = list(dict.fromkeys(a.strip().lower() for a in addresses if a and a.strip()))
    at = utcnow()
    rows = [OutgoingMail(to_address=address, subject=subject, body=body, about=about,
                         created_at=at, attempts=0) for address in wanted]
    if rows:
        session = db.session()
        session.add_all(rows)
        session.info.setdefault(_QUEUED, []).extend((row, bool(now)) for row in rows)
    return rows


def _after_flush(session: Session, flush_context: Any) -> None:
    """Note the ids of the rows queued in this transaction as they get them."""
    queued = session.info.get(_QUEUED)
    if not queued:
        return
    flushed = session.info.setdefault(_FLUSHED, {True: [], False: []})
    waiting = []
    for row, at_once in queued:
        if row.id is None:  # not in this flush (no SQL: a pending row loads nothing)
            waiting.append((row, at_once))
        else:
            flushed[at_once].append(row.id)
    session.info[_QUEUED] = waiting


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint: the outer commit decides
        return
    session.info.pop(_QUEUED, None)
    flushed = session.info.pop(_FLUSHED, None)
    if not flushed or not has_app_context():
        return  # no app to send with: the sweep sends them
    at_once = sorted(set(flushed[True]))
    later = sorted(set(flushed[False]) - set(at_once))
    if at_once:
        _send_here(at_once)
    if later:
        _hand_to_job(later)


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    """A rollback (or a close without commit) forgets the rows queued; the end of a
    savepoint changes nothing (ids of rows it rolled back find nothing to send)."""
    if transaction.parent is None:
        session.info.pop(_QUEUED, None)
        session.info.pop(_FLUSHED, None)


def _send_here(mail_ids: list[int]) -> None:
    """In this process, in a session of its own (the caller's has just committed)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        with app.app_context():  # a fresh app context is a fresh db.session
            try:
                send(mail_ids)
            finally:
                db.session.remove()
    except Exception:  # the database itself: the committed rows wait for the sweep
        log.exception("mail: could not send the outbox rows %s at once; the sweep will",
                      mail_ids[:20])


def _hand_to_job(mail_ids: list[int]) -> None:
    from taskforce.jobs import dispatch, no_broker
    from taskforce.mail import tasks

    try:
        # with no broker the job runs here, and sweeps too as no beat runs
        dispatch(tasks.send_queued, (mail_ids,), {"sweep": no_broker()},
                 retry_policy=PUBLISH_RETRY)
    except Exception as exc:  # noqa: BLE001  (committed stays committed: the sweep sends it)
        log.warning("mail: could not queue the send of outbox rows %s (%s: %s); the sweep "
                    "will send them", mail_ids[:20], type(exc).__name__, exc)


def install() -> None:
    """Listen on every session (idempotent: one app or many, once)."""
    for name, fn in (("after_flush", _after_flush), ("after_commit", _after_commit),
                     ("after_transaction_end", _after_transaction_end)):
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)


# --------------------------------------------------------------------------- sending

@dataclass
class SendResult:
    sent: int = 0
    failed: int = 0
    skipped: int = 0  # done, given up, not due, held by another sender, or gone
    not_tried: int = 0  # left for the sweep: the relay could not be reached

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed, "skipped": self.skipped,
                "not_tried": self.not_tried}


def send(mail_ids: Iterable[Any]) -> SendResult:
    """Send these outbox rows, oldest first, each by whoever claims it. Never raises
    for the relay's sake (failures are recorded on the rows); commits as it goes."""
    result = SendResult()
    ids = sorted({int(i) for i in mail_ids})
    for n, mail_id in enumerate(ids):
        outcome = _send_one(mail_id)
        if outcome is None:
            result.sent += 1
        elif outcome is False:
            result.skipped += 1
        else:
            result.failed += 1
            if _unreachable(outcome):
                result.not_tried = len(ids) - n - 1
                if result.not_tried:
                    log.warning("mail: the relay could not be reached; %s more rows wait "
                                "for the sweep", result.not_tried)
                break
    return result


def _claim(mail_id: int) -> bool:
    at = utcnow()
    claimed = db.session.execute(
        update(OutgoingMail)
        .where(OutgoingMail.id == mail_id, OutgoingMail.sent_at.is_(None),
               OutgoingMail.attempts < ATTEMPTS_MAX,
               or_(OutgoingMail.next_try_at.is_(None), OutgoingMail.next_try_at <= at),
               or_(OutgoingMail.claimed_until.is_(None), OutgoingMail.claimed_until < at))
        .values(claimed_until=at + timedelta(seconds=CLAIM_SECONDS))
        .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return claimed == 1


def _send_one(mail_id: int) -> BaseException | bool | None:
    """None: sent. False: not ours to send. An exception: the send failed (recorded)."""
    if not _claim(mail_id):
        return False
    row = db.session.get(OutgoingMail, mail_id)
    if row is None:
        db.session.rollback()
        return False
    to, subject, body = row.to_address, row.subject, row.body
    db.session.rollback()  # no transaction held open while the relay talks
    try:
        send_mail(to=[to], subject=subject, body=body)
    except Exception as error:  # noqa: BLE001  (recorded on the row; tried again later)
        _failed(mail_id, error)
        return error
    # Dying here sends it again once the claim lapses: at least once, never lost.
    db.session.execute(
        update(OutgoingMail).where(OutgoingMail.id == mail_id, OutgoingMail.sent_at.is_(None))
        .values(sent_at=utcnow(), claimed_until=None)
        .execution_options(synchronize_session=False))
    db.session.commit()
    return None


def _unreachable(error: BaseException) -> bool:
    """The relay was not reached (refused, timed out, hung up), as against refusing
    this one message."""
    return isinstance(error, OSError) and not isinstance(error, _REFUSED)


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failure: 15, 30, 60 ... at most 600."""
    return float(min(RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), RETRY_MAX_SECONDS))


def _failed(mail_id: int, error: BaseException) -> None:
    try:
        row = db.session.get(OutgoingMail, mail_id)
        if row is None or row.sent_at is not None:
            db.session.rollback()
            return
        row.attempts = (row.attempts or 0) + 1
        row.last_error = f"{type(error).__name__}: {error}"[:ERROR_MAX]
        row.next_try_at = utcnow() + timedelta(seconds=retry_delay(row.attempts))
        row.claimed_until = None
        attempts, about = row.attempts, row.about
        db.session.commit()
    except Exception:  # the database itself: the claim lapses and the sweep tries again
        db.session.rollback()
        log.exception("mail: outbox row %s failed and could not be recorded", mail_id)
        return
    if attempts >= ATTEMPTS_MAX:
        log.error("mail: outbox row %s (%s) failed %s times and is no longer tried: %s: %s",
                  mail_id, about, attempts, type(error).__name__, error)
    else:
        log.warning("mail: outbox row %s (%s) not sent (attempt %s), tried again later: "
                    "%s: %s", mail_id, about, attempts, type(error).__name__, error)


# --------------------------------------------------------------------------- sweep

@dataclass
class SweepResult:
    due: int = 0  # rows found waiting past the grace period and due
    sent: SendResult | None = None
    forgotten: int = 0  # rows sent more than KEEP_SENT_DAYS ago, deleted

    def as_dict(self) -> dict[str, Any]:
        return {"due": self.due, **(self.sent or SendResult()).as_dict(),
                "forgotten": self.forgotten}


def sweep(*, older_than: float = SWEEP_AFTER_SECONDS, limit: int = SWEEP_BATCH) -> SweepResult:
    """Send the unsent rows queued more than `older_than` seconds ago that are due
    (their fast path never ran, or failed), oldest first, at most `limit`; delete
    rows sent more than KEEP_SENT_DAYS ago. Safe alongside the fast path and
    itself: every row is claimed before it is sent."""
    at = utcnow()
    due = list(db.session.scalars(
        select(OutgoingMail.id)
        .where(OutgoingMail.sent_at.is_(None), OutgoingMail.attempts < ATTEMPTS_MAX,
               OutgoingMail.created_at <= at - timedelta(seconds=older_than),
               or_(OutgoingMail.next_try_at.is_(None), OutgoingMail.next_try_at <= at),
               or_(OutgoingMail.claimed_until.is_(None), OutgoingMail.claimed_until < at))
        .order_by(OutgoingMail.id).limit(limit)))
    db.session.rollback()
    result = SweepResult(due=len(due))
    if due:
        log.info("mail: the sweep sends %s outbox rows left unsent", len(due))
        result.sent = send(due)
    old = list(db.session.scalars(
        select(OutgoingMail.id)
        .where(OutgoingMail.sent_at < at - timedelta(days=KEEP_SENT_DAYS))
        .order_by(OutgoingMail.sent_at).limit(10 * limit)))
    if old:
        db.session.execute(delete(OutgoingMail).where(OutgoingMail.id.in_(old)))
        result.forgotten = len(old)
    db.session.commit()
    return result


def outbox_status() -> dict[str, Any]:
    """For a health page: rows still to send (`unsent`, of which `failing` have failed
    at least once), rows given up after ATTEMPTS_MAX (a person must look), and the age
    in seconds of the oldest row still to send. Numbers only."""
    unsent = OutgoingMail.sent_at.is_(None)
    live = OutgoingMail.attempts < ATTEMPTS_MAX

    def count(*where: Any) -> int:
        return db.session.scalar(select(func.count(OutgoingMail.id)).where(unsent, *where)) or 0

    status: dict[str, Any] = {"unsent": count(live),
                              "failing": count(live, OutgoingMail.attempts > 0),
                              "given_up": count(~live)}
    oldest = db.session.scalar(select(func.min(OutgoingMail.created_at)).where(unsent, live))
    db.session.rollback()
    status["oldest_unsent_seconds"] = (round((utcnow() - oldest).total_seconds(), 1)
                                       if oldest is not None else None)
    return status
