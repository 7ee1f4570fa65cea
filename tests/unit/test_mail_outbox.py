"""The mail outbox (taskforce/mail): a message exists if and only if its transaction
commits, leaves after the commit, is claimed before it is sent (never twice at once),
is retried with backoff when the relay fails, is sent by the sweep when the fast path
never ran, and stops after ATTEMPTS_MAX.

No SMTP server here: `send_mail` is replaced by `Relay`, a stand-in that records what
would reach the relay and can fail as it would (the real server is in
tests/integration/test_mail_outbox_smtp.py). Celery is eager (in-process) except in
TestBrokerRefused, whose broker URL names a closed port: the job is refused for real.
"""
from __future__ import annotations

import logging
import smtplib
import socket
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from taskforce import mail
from taskforce.accounts.models import utcnow
from taskforce.extensions import db
from taskforce.mail import service
from taskforce.mail.models import OutgoingMail
from tests.concurrency import at_once

BODY = "A new deconfliction hit, DC-2026-000001, concerns you.\n"


class Relay:
    """Stand-in for the SMTP relay (send_mail): records messages; fails on demand."""

    def __init__(self) -> None:
        self.sent: list[tuple[list[str], str, str]] = []
        self.calls = 0
        self.down: BaseException | None = None  # every send raises this
        self.refused: set[str] = set()  # these recipients are refused, one by one
        self.delay = 0.0

    def __call__(self, *, to, subject, body):
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.down is not None:
            raise self.down
        if set(to) & self.refused:
            raise smtplib.SMTPRecipientsRefused({a: (550, b"no such user") for a in to})
        self.sent.append((list(to), subject, body))

    @property
    def to(self) -> list[str]:
        return [a for to, _, _ in self.sent for a in to]


@pytest.fixture()
def relay(monkeypatch) -> Relay:
    r = Relay()
    monkeypatch.setattr(service, "send_mail", r)
    return r


def rows() -> list[OutgoingMail]:
    db.session.expire_all()
    return list(db.session.scalars(select(OutgoingMail).order_by(OutgoingMail.id)))


def put(address: str, *, age: float = 60.0, **kw) -> int:
    """A committed row whose fast path never ran (as after a crash right after the
    commit): written directly, not through queue()."""
    row = OutgoingMail(to_address=address, subject="Deconfliction hit", body=BODY,
                       about="deconfliction_hit",
                       created_at=utcnow() - timedelta(seconds=age), **kw)
    db.session.add(row)
    db.session.commit()
    return row.id


def shift(mail_id: int, **values) -> None:
    db.session.execute(update(OutgoingMail).where(OutgoingMail.id == mail_id).values(**values))
    db.session.commit()


# --------------------------------------------------------------------------- the commit decides

def test_mail_of_a_rolled_back_transaction_is_never_sent(app, relay):
    (row,) = mail.queue(["spec@example.gov"], "Survivor alert", BODY, about="survivor_alert",
                        now=True)
    db.session.flush()
    assert row.id is not None and relay.calls == 0  # written, not committed: not sent
    db.session.rollback()
    db.session.commit()  # a later commit must not send the rolled-back row
    assert relay.calls == 0 and rows() == []
    assert mail.sweep(older_than=0).due == 0 and relay.calls == 0


def test_mail_leaves_after_the_commit_once_per_address(app, relay):
    queued = mail.queue(["Spec@Example.gov", " spec@example.gov", "lead@example.gov", ""],
                        "Deconfliction hit DC-2026-000001", BODY, about="deconfliction_hit")
    assert [r.to_address for r in queued] == ["spec@example.gov", "lead@example.gov"]
    db.session.flush()
    assert relay.calls == 0
    db.session.commit()  # Celery eager: the send job runs in-process after the commit
    assert sorted(relay.to) == ["lead@example.gov", "spec@example.gov"]
    assert all(subject == "Deconfliction hit DC-2026-000001" and body == BODY
               for _, subject, body in relay.sent)
    for row in rows():
        assert row.sent_at is not None and row.claimed_until is None
        assert row.attempts == 0 and row.last_error is None and row.about == "deconfliction_hit"
    assert mail.outbox_status() == {"unsent": 0, "failing": 0, "given_up": 0,
                                    "oldest_unsent_seconds": None}
    mail.sweep(older_than=0)
    assert len(relay.sent) == 2  # sent is sent: the sweep leaves it alone


def test_a_savepoint_rolled_back_takes_its_mail_with_it(app, relay):
    mail.queue("kept@example.gov", "Kept", BODY, about="test")
    nested = db.session.begin_nested()
    mail.queue("dropped@example.gov", "Dropped", BODY, about="test")
    db.session.flush()
    nested.rollback()
    db.session.commit()
    assert relay.to == ["kept@example.gov"]
    assert [r.to_address for r in rows()] == ["kept@example.gov"]


def test_queue_refuses_a_missing_label_or_an_overlong_subject(app, relay):
    with pytest.raises(ValueError, match="about"):
        mail.queue("a@example.gov", "S", BODY, about="")
    with pytest.raises(ValueError, match="subject"):
        mail.queue("a@example.gov", "S" * 256, BODY, about="test")
    db.session.commit()
    assert rows() == []


# --------------------------------------------------------------------------- failures

def test_a_failed_send_is_recorded_and_retried_later_with_backoff(app, relay):
    relay.down = ConnectionRefusedError(111, "Connection refused")
    mail.queue("spec@example.gov", "Survivor alert", BODY, about="survivor_alert", now=True)
    before = utcnow()
    db.session.commit()
    (row,) = rows()
    assert relay.calls == 1 and row.sent_at is None and row.claimed_until is None
    assert row.attempts == 1 and row.last_error.startswith("ConnectionRefusedError")
    wait = (row.next_try_at - before).total_seconds()
    assert service.RETRY_BASE_SECONDS - 1 <= wait <= service.RETRY_BASE_SECONDS + 5
    assert mail.outbox_status()["failing"] == 1

    shift(row.id, created_at=utcnow() - timedelta(minutes=5))
    assert mail.sweep().due == 0 and relay.calls == 1  # not due before next_try_at

    shift(row.id, next_try_at=utcnow() - timedelta(seconds=1))  # its time has come
    before = utcnow()
    assert mail.sweep().due == 1 and relay.calls == 2  # still down: the wait doubles
    (row,) = rows()
    assert row.attempts == 2
    wait = (row.next_try_at - before).total_seconds()
    assert 2 * service.RETRY_BASE_SECONDS - 1 <= wait <= 2 * service.RETRY_BASE_SECONDS + 5

    relay.down = None  # the relay is back
    shift(row.id, next_try_at=utcnow() - timedelta(seconds=1))
    assert mail.sweep().sent.sent == 1
    (row,) = rows()
    assert row.sent_at is not None and row.attempts == 2 and relay.to == ["spec@example.gov"]
    assert row.last_error.startswith("ConnectionRefusedError")  # what happened, kept


def test_the_backoff_doubles_up_to_ten_minutes():
    assert [service.retry_delay(n) for n in range(1, 9)] == [
        15, 30, 60, 120, 240, 480, 600, 600]


def test_a_relay_out_of_reach_ends_the_batch_a_refused_recipient_does_not(app, relay):
    relay.down = ConnectionRefusedError(111, "Connection refused")
    mail.queue(["a@example.gov", "b@example.gov", "c@example.gov"], "S", BODY, about="test")
    db.session.commit()
    assert relay.calls == 1  # not three connection attempts to a relay that is down
    assert [r.attempts for r in rows()] == [1, 0, 0]

    relay.down = None
    relay.refused = {"bad@example.gov"}
    mail.queue(["bad@example.gov", "good@example.gov"], "S", BODY, about="test")
    db.session.commit()
    assert relay.to == ["good@example.gov"]
    bad = next(r for r in rows() if r.to_address == "bad@example.gov")
    assert bad.attempts == 1 and bad.last_error.startswith("SMTPRecipientsRefused")


def test_after_max_attempts_it_is_no_longer_tried_and_logged_as_an_error(app, relay, caplog):
    relay.down = TimeoutError("timed out")
    mail_id = put("spec@example.gov", attempts=service.ATTEMPTS_MAX - 1)
    with caplog.at_level(logging.WARNING, logger="taskforce.mail.service"):
        assert mail.sweep().due == 1
    (row,) = rows()
    assert row.attempts == service.ATTEMPTS_MAX and row.sent_at is None
    mine = [r for r in caplog.records if r.name == "taskforce.mail.service"]
    assert [r.levelno for r in mine] == [logging.ERROR]
    assert "no longer tried" in mine[0].getMessage()
    assert BODY not in caplog.text  # the log names the row, not the message

    relay.down = None
    shift(mail_id, next_try_at=utcnow() - timedelta(hours=1))
    assert mail.sweep(older_than=0).due == 0
    assert mail.send([mail_id]).skipped == 1 and relay.calls == 1
    status = mail.outbox_status()
    assert status["given_up"] == 1 and status["unsent"] == 0


# --------------------------------------------------------------------------- claims

def test_a_row_claimed_by_another_sender_is_not_sent_twice(app, relay):
    mail_id = put("spec@example.gov")
    shift(mail_id, claimed_until=utcnow() + timedelta(seconds=30))  # another sender has it
    assert mail.send([mail_id]).skipped == 1
    assert mail.sweep(older_than=0).due == 0 and relay.calls == 0

    shift(mail_id, claimed_until=utcnow() - timedelta(seconds=1))  # that sender died
    assert mail.sweep().sent.sent == 1
    assert mail.send([mail_id]).skipped == 1  # a redelivered job: already sent
    assert relay.to == ["spec@example.gov"]


def test_two_senders_at_once_send_it_once(app, relay):
    """Two threads, each with its own app context (session, connection), as the fast
    path and the sweep in two processes."""
    mail_id = put("spec@example.gov")
    relay.delay = 0.3  # the first holds the row while the relay talks
    db.session.remove()
    results = at_once(app, lambda _: mail.send([mail_id]), 2, timeout=30)
    assert sorted((r.sent, r.skipped) for r in results) == [(0, 1), (1, 0)]
    assert relay.calls == 1 and rows()[0].sent_at is not None


# --------------------------------------------------------------------------- the sweep

def test_the_sweep_sends_a_row_the_fast_path_never_sent_and_spares_young_ones(app, relay):
    old = put("old@example.gov", age=60)
    young = put("young@example.gov", age=1)
    status = mail.outbox_status()
    assert status["unsent"] == 2 and 59 <= status["oldest_unsent_seconds"] <= 70
    result = mail.sweep()
    assert result.due == 1 and relay.to == ["old@example.gov"]
    assert [r.id for r in rows() if r.sent_at is None] == [young]
    shift(young, created_at=utcnow() - timedelta(seconds=service.SWEEP_AFTER_SECONDS + 1))
    mail.sweep()
    assert relay.to == ["old@example.gov", "young@example.gov"]
    assert old != young


def test_without_a_broker_the_send_job_also_sends_what_an_earlier_failure_left(app, relay):
    """No broker, no beat: the job a commit sends runs here and sweeps too, so a row
    an earlier failure left behind goes out with the next mail, not never."""
    assert app.extensions["celery"].conf.task_always_eager
    left = put("left@example.gov", age=60)
    mail.queue("next@example.gov", "Deconfliction hit", BODY, about="deconfliction_hit")
    db.session.commit()
    assert sorted(relay.to) == ["left@example.gov", "next@example.gov"]
    assert all(r.sent_at is not None for r in rows()) and left


def test_the_sweep_sends_oldest_first_and_a_bounded_batch(app, relay):
    ids = [put(f"p{i}@example.gov", age=100 - i) for i in range(5)]
    assert mail.sweep(limit=3).due == 3
    assert relay.to == ["p0@example.gov", "p1@example.gov", "p2@example.gov"]
    assert [r.id for r in rows() if r.sent_at is None] == ids[3:]


def test_the_sweep_deletes_rows_sent_long_ago_only(app, relay):
    at = utcnow()
    gone = put("gone@example.gov", sent_at=at - timedelta(days=service.KEEP_SENT_DAYS + 1))
    kept = put("kept@example.gov", sent_at=at - timedelta(days=service.KEEP_SENT_DAYS - 1))
    given_up = put("stuck@example.gov", age=40 * 86400, attempts=service.ATTEMPTS_MAX)
    assert mail.sweep().forgotten == 1
    assert [r.id for r in rows()] == [kept, given_up]  # never sent: a person must look
    assert gone not in [r.id for r in rows()] and relay.calls == 0


# --------------------------------------------------------------------------- the broker refuses

def closed_port() -> int:
    """A port nothing listens on: connecting to it is refused, as with Redis down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestBrokerRefused:
    @pytest.fixture()
    def app_environ(self, app_environ):
        url = f"redis://127.0.0.1:{closed_port()}/0"
        return {**app_environ, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}

    def test_now_sends_here_a_refused_job_leaves_the_row_to_the_sweep(self, app, relay):
        assert not app.extensions["celery"].conf.task_always_eager
        mail.queue("web@example.gov", "Deconfliction hit", BODY, about="deconfliction_hit")
        db.session.commit()  # the send job is refused: the row is committed all the same
        assert relay.calls == 0
        (web,) = rows()
        assert web.sent_at is None and web.attempts == 0

        mail.queue("worker@example.gov", "Survivor alert", BODY, about="survivor_alert",
                   now=True)
        db.session.commit()  # sent by this process, no broker needed
        assert relay.to == ["worker@example.gov"]

        shift(web.id, created_at=utcnow())  # young whatever the send above took
        assert mail.sweep().due == 0  # the web row is inside the fast path's head start
        shift(web.id, created_at=utcnow() - timedelta(seconds=service.SWEEP_AFTER_SECONDS + 1))
        assert mail.sweep().due == 1
        assert relay.to == ["worker@example.gov", "web@example.gov"]
        assert all(r.sent_at is not None for r in rows())


# --------------------------------------------------------------------------- the callers

def test_a_survivor_alert_notice_is_queued_with_the_alert_and_sent_at_once(app, relay):
    from taskforce.victims.models import SurvivorAlert
    from tests.unit.test_victims_alerts import add_survivor, build_world

    world = build_world()
    add_survivor(world)  # the graph's commit -> the check job (eager) -> alerts + notices
    numbers = {a.agency_id: a.number for a in db.session.scalars(select(SurvivorAlert))}
    sent = {r.to_address: r for r in rows()}
    assert set(sent) == {world[w].user.email.lower() for w in ("spec_a", "spec_a2", "spec_fbi")}
    assert sorted(relay.to) == sorted(sent)
    for row in sent.values():
        assert row.about == "survivor_alert" and row.sent_at is not None
        assert any(number in row.body for number in numbers.values())
        for leak in ("Maria", "Lopez", "Nightjar", "Springfield", "Survivor-"):
            assert leak not in row.body and leak not in row.subject


# --------------------------------------------------------------------------- wiring

def test_init_app_schedules_the_sweep_and_adds_the_commands(app, relay):
    from taskforce.mail import tasks

    mail.init_app(app)  # what create_app is to call
    entry = app.extensions["celery"].conf.beat_schedule[tasks.SWEEP_ENTRY]
    assert entry["task"] == tasks.sweep_outbox.name
    assert entry["schedule"] == tasks.SWEEP_EVERY_SECONDS
    put("old@example.gov", age=60)
    runner = app.test_cli_runner()
    out = runner.invoke(args=["mail", "status"])
    assert out.exit_code == 0 and "unsent 1 (failing 0), given up 0" in out.output
    out = runner.invoke(args=["mail", "sweep"])
    assert out.exit_code == 0 and "due 1: sent 1" in out.output, out.output
    assert relay.to == ["old@example.gov"]
