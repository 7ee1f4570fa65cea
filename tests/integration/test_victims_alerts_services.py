"""Survivor alerts on the real services: the notice reaches the real SMTP server, one
message per victim specialist of the agencies concerned and none for anyone else,
holding the alert number and a link only; and, through the real Redis broker and a
real Celery worker process, it arrives within 5 seconds of the link's commit.
"""
from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import select

from scripts import services
from taskforce import create_app
from taskforce.extensions import db
from taskforce.graph import service as graph
from taskforce.investigations.models import Case
from taskforce.victims.models import SurvivorAlert
from tests.unit.test_victims_alerts import add_survivor, build_world

pytestmark = pytest.mark.integration

BASE = "https://taskforce.example.gov"
LEAKS = ("Maria", "Lopez", "Nightjar", "Kestrel", "Springfield", "State Police", "FBI", "HSI",
         "linked to case", "Survivor-")


def _mail_for(smtp, address: str, *, timeout: float):
    return services.read_mail(smtp, timeout=timeout,
                              match=lambda m: address in str(m["To"]))


def _no_mail_for(smtp, address: str) -> bool:
    try:
        services.read_mail(smtp, timeout=0.5, match=lambda m: address in str(m["To"]),
                           remove=False)
    except TimeoutError:
        return True
    return False


def _assert_clean(msg, alerts, case_numbers):
    text = str(msg["Subject"]) + "\n" + msg.get_content()
    for alert in alerts:
        assert alert.number in text
        assert f"{BASE}/victims/alerts/{alert.id}" in text
    for leak in (*LEAKS, *case_numbers):
        assert leak.lower() not in text.lower(), f"{leak!r} in the mail to {msg['To']}"


class TestMail:
    @pytest.fixture()
    def app_environ(self, app_environ, smtp_service):
        return {**app_environ, **smtp_service.env(), "TASKFORCE_BASE_URL": BASE}

    def test_each_concerned_specialist_gets_one_clean_mail_and_nobody_else(
            self, app, smtp_service):
        world = build_world()
        services.read_mail(smtp_service, count=0, timeout=0)  # start from an empty box
        survivor = add_survivor(world)
        db.session.expire_all()
        alerts = {a.agency_id: a for a in db.session.scalars(select(SurvivorAlert))}
        assert set(alerts) == {world.spd.id, world.fbi.id}
        numbers = [db.session.get(Case, c).number for c in (world.case_a, world.case_b)]
        for who, agency in (("spec_a", world.spd), ("spec_a2", world.spd),
                            ("spec_fbi", world.fbi)):
            user = world[who].user
            (msg,) = _mail_for(smtp_service, user.email, timeout=10)
            assert str(msg["To"]) == user.email  # one message per person: no shared list
            _assert_clean(msg, [alerts[agency.id]], numbers + [survivor.pseudonym])
        for who in ("spec_b", "spec_hsi", "lead_a", "inv_a"):
            assert _no_mail_for(smtp_service, world[who].user.email), who


def test_alert_reaches_the_smtp_server_through_the_real_worker_within_5s(
        celery_worker, smtp_service, tmp_path):
    environ = {**celery_worker.environ, "TASKFORCE_INSTANCE": str(tmp_path / "instance")}
    app = create_app(environ=environ)
    assert not app.extensions["celery"].conf.task_always_eager
    with app.app_context():
        db.create_all()
        world = build_world(suffix=f" {uuid.uuid4().hex[:6]}")
        survivor = add_survivor(world)
        trafficker = graph.add_entity(actor=world["lead_a"].actor, case_id=world.case_a,
                                      kind="person", label="Vic Tor", case_role="suspect")
        # let the worker finish what the setup queued, then start from an empty box
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            db.session.expire_all()
            if len(db.session.scalars(select(SurvivorAlert.id)
                                      .where(SurvivorAlert.entity_id == survivor.id)).all()) == 2:
                break
            time.sleep(0.1)
        time.sleep(1.0)
        services.read_mail(smtp_service, count=0, timeout=0)
        spec = world["spec_a"].user

        committed = time.monotonic()
        link = graph.add_link(actor=world["lead_a"].actor, case_id=world.case_a,
                              source_id=trafficker.id, target_id=survivor.id, type="CONTROLS")
        (msg,) = _mail_for(smtp_service, spec.email, timeout=5)
        took = time.monotonic() - committed
        assert took < 5.0, f"the alert took {took:.2f}s"
        db.session.expire_all()
        mine = db.session.scalars(select(SurvivorAlert).where(
            SurvivorAlert.link_id == link.id, SurvivorAlert.agency_id == world.spd.id)).one()
        assert mine.reason == "link" and mine.link_type == "CONTROLS"
        assert mine.number in str(msg["Subject"])
        assert "Maria" not in msg.get_content() and survivor.pseudonym not in msg.get_content()
        assert _no_mail_for(smtp_service, world["spec_hsi"].user.email)
        assert _no_mail_for(smtp_service, world["spec_b"].user.email)
        db.session.remove()
