"""The mail outbox against the real SMTP server (aiosmtpd on loopback, started by the
suite): a survivor alert's notice arrives; with the relay down at the commit, the
alert commits all the same, its notice waits in the outbox with the error, and once
the relay is back the sweep delivers it, once, holding no identifier. On SQLite and
on PostgreSQL.
"""
from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from scripts import services
from taskforce import mail
from taskforce.accounts.models import utcnow
from taskforce.extensions import db
from taskforce.investigations.models import Case
from taskforce.mail.models import OutgoingMail
from taskforce.victims.models import SurvivorAlert
from tests.unit.test_victims_alerts import add_survivor, build_world

pytestmark = pytest.mark.integration

BASE = "https://taskforce.example.gov"
CONCERNED = ("spec_a", "spec_a2", "spec_fbi")  # case A's agency and its partner
LEAKS = ("Maria", "Lopez", "Nightjar", "Kestrel", "Springfield", "State Police", "FBI", "HSI",
         "linked to case", "Survivor-")


def closed_port() -> int:
    """A port nothing listens on: connecting to it is refused, as with the relay down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mail_to(smtp, address: str) -> list:
    """Every message in the box for exactly this address (left in the box)."""
    return services.read_mail(smtp, count=0, timeout=0, remove=False,
                              match=lambda m: str(m["To"]) == address)


def outbox() -> list[OutgoingMail]:
    db.session.expire_all()
    return list(db.session.scalars(select(OutgoingMail).order_by(OutgoingMail.id)))


def assert_clean(msg, world, survivor) -> None:
    text = str(msg["Subject"]) + "\n" + msg.get_content()
    numbers = [db.session.get(Case, c).number for c in (world.case_a, world.case_b)]
    for leak in (*LEAKS, *numbers, survivor.pseudonym):
        assert leak.lower() not in text.lower(), f"{leak!r} in the mail to {msg['To']}"
    alerts = db.session.scalars(select(SurvivorAlert).where(
        SurvivorAlert.entity_id == survivor.id)).all()
    assert any(a.number in text and f"{BASE}/victims/alerts/{a.id}" in text for a in alerts)


class TestSurvivorAlertMail:
    @pytest.fixture()
    def app_environ(self, app_environ, smtp_service):
        return {**app_environ, **smtp_service.env(), "TASKFORCE_BASE_URL": BASE}

    @pytest.fixture()
    def world(self, app, smtp_service):
        world = build_world()
        services.read_mail(smtp_service, count=0, timeout=0)  # an empty box
        return world

    def test_the_alert_notice_reaches_the_smtp_server(self, app, world, smtp_service):
        survivor = add_survivor(world)
        for who in CONCERNED:
            address = world[who].user.email
            (msg,) = services.read_mail(smtp_service, timeout=10,
                                        match=lambda m, a=address: str(m["To"]) == a)
            assert_clean(msg, world, survivor)
        rows = outbox()
        assert len(rows) == len(CONCERNED)
        assert all(r.about == "survivor_alert" and r.sent_at is not None for r in rows)

    def test_relay_down_at_the_commit_then_the_sweep_delivers(self, app, world, smtp_service):
        up = app.config["SMTP_PORT"]
        app.config["SMTP_PORT"] = closed_port()  # the relay is down when the alert commits
        try:
            survivor = add_survivor(world)
        finally:
            app.config["SMTP_PORT"] = up
        db.session.expire_all()
        assert len(db.session.scalars(select(SurvivorAlert).where(
            SurvivorAlert.entity_id == survivor.id)).all()) == 2  # the alerts stand
        rows = outbox()
        assert len(rows) == len(CONCERNED)
        assert all(r.sent_at is None and r.claimed_until is None for r in rows)
        first = rows[0]  # the one tried: a relay out of reach ends the batch there
        assert first.attempts == 1 and "Connection" in first.last_error
        assert first.next_try_at > utcnow()
        assert [r.attempts for r in rows[1:]] == [0] * (len(CONCERNED) - 1)
        for who in CONCERNED:
            assert mail_to(smtp_service, world[who].user.email) == [], who
        status = mail.outbox_status()
        assert status["unsent"] == len(CONCERNED) and status["failing"] == 1

        # The relay is back. Time passes (the rows are made older, not waited for):
        # past the sweep's grace period and the failed row's next try.
        past = utcnow() - timedelta(minutes=1)
        db.session.execute(update(OutgoingMail).values(created_at=past, next_try_at=past))
        db.session.commit()
        result = mail.sweep()
        assert result.due == len(CONCERNED) and result.sent.sent == len(CONCERNED)
        for who in CONCERNED:
            (msg,) = mail_to(smtp_service, world[who].user.email)  # once, no duplicate
            assert_clean(msg, world, survivor)
        assert all(r.sent_at is not None for r in outbox())
        assert mail.outbox_status()["unsent"] == 0
        assert mail.sweep().due == 0
