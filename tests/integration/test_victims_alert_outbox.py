"""The outbox of survivor-alert checks (issue 5: an alert must never be lost), on the
real services.

The broker is made to refuse for real: the app's broker URL names a port on
127.0.0.1 where nothing listens, so every job sent after a commit fails as it would
with Redis down. The check written in the commit's transaction waits; the sweep
runs it (in this process, and through the real Celery worker on the real Redis),
and the email reaches the real SMTP server, for the concerned specialists only.
On SQLite and on PostgreSQL, except the test with the worker (its database is the
worker fixture's SQLite file).
"""
from __future__ import annotations

import io
import socket
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from scripts import services
from taskforce import create_app
from taskforce.accounts.models import User, utcnow
from taskforce.accounts.permissions import Actor
from taskforce.extensions import db
from taskforce.graph import imports
from taskforce.graph import service as graph
from taskforce.graph.models import CaseEntity, Entity, Link
from taskforce.victims import service, tasks
from taskforce.victims.models import AlertCheck, SurvivorAlert
from tests.concurrency import at_once
from tests.unit.test_victims_alerts import add_phone, add_survivor, build_world

pytestmark = pytest.mark.integration

BASE = "https://taskforce.example.gov"
CONCERNED = ("spec_a", "spec_a2", "spec_fbi")  # case A's agency and its partner
UNCONCERNED = ("spec_b", "spec_hsi", "lead_a", "inv_a")


def closed_port() -> int:
    """A port nothing listens on: connecting to it is refused, as with Redis down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused_broker() -> dict[str, str]:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    return {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}


def checks() -> list[AlertCheck]:
    db.session.expire_all()
    return list(db.session.scalars(select(AlertCheck).order_by(AlertCheck.id)))


def alert_count() -> int:
    return db.session.scalar(select(func.count(SurvivorAlert.id))) or 0


def mail_to(smtp, address: str) -> list:
    """Every message in the box for exactly this address (left in the box)."""
    return services.read_mail(smtp, count=0, timeout=0, remove=False,
                              match=lambda m: str(m["To"]) == address)


def age(seconds: float) -> None:
    """Make every waiting check look committed `seconds` ago (the sweep's grace)."""
    db.session.execute(AlertCheck.__table__.update().where(AlertCheck.processed_at.is_(None))
                       .values(created_at=utcnow() - timedelta(seconds=seconds)))
    db.session.commit()


def new_victim(world, label: str = "Rosa Diaz") -> tuple[Entity, CaseEntity]:
    """A survivor written with the ORM directly (as a console script would)."""
    e = Entity(kind="person", pseudonym=f"Survivor-{uuid.uuid4().hex[:4].upper()}")
    db.session.add(e)
    db.session.flush()
    ce = CaseEntity(case_id=world.case_a, entity_id=e.id, role="victim", label=label)
    db.session.add(ce)
    return e, ce


class TestBrokerRefused:
    @pytest.fixture()
    def app_environ(self, app_environ, smtp_service):
        return {**app_environ, **smtp_service.env(), **refused_broker(),
                "TASKFORCE_BASE_URL": BASE}

    @pytest.fixture()
    def world(self, app, smtp_service):
        assert not app.extensions["celery"].conf.task_always_eager
        world = build_world()
        services.read_mail(smtp_service, count=0, timeout=0)  # an empty box
        return world

    def test_a_rollback_leaves_no_check_and_a_commit_leaves_one(self, app, world):
        before = len(checks())
        new_victim(world)
        db.session.flush()
        db.session.rollback()
        assert len(checks()) == before

        _, ce = new_victim(world)
        db.session.commit()
        (check,) = checks()[before:]
        assert check.case_entity_ids == [ce.id] and check.link_ids == []
        # the job was refused: the check waits, nothing was alerted yet
        assert check.processed_at is None and check.attempts == 0
        assert db.session.scalar(select(func.count(SurvivorAlert.id))
                                 .where(SurvivorAlert.entity_id == ce.entity_id)) == 0

    def test_a_commit_that_fails_at_the_last_moment_leaves_neither_link_nor_check(
            self, app, world):
        """The check is flushed in the commit's own transaction: when the commit fails
        after it (a listener after ours raises), both go."""
        survivor, phone = add_survivor(world), add_phone(world, "(312) 555-0199")
        before, links_before = len(checks()), db.session.scalar(select(func.count(Link.id)))
        seen: list[int] = []

        def fail_late(session: Session) -> None:
            seen.extend(session.info.get("victims_alert_checks") or [])
            raise RuntimeError("the commit fails after the check was written")

        event.listen(Session, "before_commit", fail_late)
        try:
            db.session.add(Link(case_id=world.case_a, source_id=phone.id,
                                target_id=survivor.id, type="CALLED",
                                provenance_kind="manual", count=1, confidence=1.0))
            with pytest.raises(RuntimeError):
                db.session.commit()
        finally:
            event.remove(Session, "before_commit", fail_late)
        db.session.rollback()
        assert seen, "our listener had written the check before the commit failed"
        assert len(checks()) == before
        assert db.session.get(AlertCheck, seen[0]) is None
        assert db.session.scalar(select(func.count(Link.id))) == links_before

    def test_the_sweep_runs_the_refused_check_and_mails_the_concerned_only(
            self, app, world, smtp_service):
        survivor = add_survivor(world)
        (check,) = [c for c in checks() if c.processed_at is None]
        assert alert_count() == 0
        # not yet: the fast path may still be on its way. The refused publish and its
        # retries can take longer than the grace on a loaded machine, so the check is
        # made young again first: what is asserted is the grace, not this test's speed.
        age(0)
        assert service.sweep().due == 0
        age(service.SWEEP_AFTER_SECONDS + 1)
        result = service.sweep()
        assert result.due == 1 and len(result.alerts) == 2
        db.session.expire_all()
        assert db.session.get(AlertCheck, check.id).processed_at is not None
        assert sorted(a.agency_id for a in db.session.scalars(select(SurvivorAlert))) == sorted(
            [world.spd.id, world.fbi.id])
        assert all(a.entity_id == survivor.id for a in db.session.scalars(select(SurvivorAlert)))
        for who in CONCERNED:
            (msg,) = mail_to(smtp_service, world[who].user.email)
            assert "Survivor alert SA-" in str(msg["Subject"])
            assert "Maria" not in msg.get_content()
        for who in UNCONCERNED:
            assert mail_to(smtp_service, world[who].user.email) == [], who
        assert service.outbox_status()["waiting"] == 0

    def test_fast_path_and_sweep_on_the_same_check_alert_once(self, app, world, smtp_service):
        add_survivor(world)
        (check,) = [c for c in checks() if c.processed_at is None]
        first = service.run_checks([check.id])  # the fast path, late
        age(service.SWEEP_AFTER_SECONDS + 1)
        assert service.sweep().due == 0  # done: the sweep does not take it again
        assert service.run_checks([check.id]) == []  # a redelivered fast-path job
        assert len(first) == 2 and alert_count() == 2
        time.sleep(0.3)
        for who in CONCERNED:
            assert len(mail_to(smtp_service, world[who].user.email)) == 1, who

    def test_two_runs_at_once_raise_each_alert_once(self, app, world, smtp_service):
        """The fast-path job and the sweep start the same check at the same moment, in
        two sessions (two connections): one raises, the other finds it taken."""
        add_survivor(world)
        (check,) = [c for c in checks() if c.processed_at is None]
        emails = [world[who].user.email for who in CONCERNED]
        check_id = check.id
        db.session.remove()
        raised = at_once(app, lambda _: [a.number for a in service.run_checks([check_id])], 2)
        assert sorted(len(r) for r in raised) == [0, 2]
        assert alert_count() == 2
        assert db.session.get(AlertCheck, check.id).processed_at is not None
        time.sleep(0.3)
        for address in emails:
            assert len(mail_to(smtp_service, address)) == 1, address

    def test_an_import_of_thousands_of_links_writes_one_check(self, app, world, smtp_service):
        """The CDR import writes its memberships and links with bulk INSERTs, 5,000 rows
        a statement: the check notes each case's rows above the table's last id, one
        outbox row in all; run, it alerts case B's specialist of the survivor one link
        away (the survivor uses a phone the file names)."""
        lead_a, lead_b = world["lead_a"].actor, world["lead_b"].actor
        survivor = add_survivor(world)
        phone = add_phone(world, "(312) 555-0142")
        graph.add_link(actor=lead_a, case_id=world.case_a, source_id=survivor.id,
                       target_id=phone.id, type="USES")
        age(service.SWEEP_AFTER_SECONDS + 1)
        service.sweep()
        services.read_mail(smtp_service, count=0, timeout=0)
        before = len(checks())
        rows = ["caller,callee,start,duration,call_type"]
        rows += [f"+1312555{n:04d},+1708555{n:04d},2024-03-01T10:00:00,60,voice"
                 for n in range(1, 3001)]
        rows.append("+13125550142,+17085550001,2024-03-02T10:00:00,30,voice")
        started = imports.start_import(actor=lead_b, case_id=world.case_b,
                                       stream=io.BytesIO(("\n".join(rows) + "\n").encode()),
                                       kind="cdr", filename="cdr.csv", dispatch=False)
        run = imports.run(started.run.id)
        assert run.status == "done" and run.links_created == 3001
        new = checks()[before:]
        assert len(new) == 1, [(c.id, c.bulk) for c in new]
        (check,) = new
        assert check.link_ids == [] and check.case_entity_ids == []
        assert sorted((k, c) for k, c, _floor in check.bulk) == [
            ("case_entities", world.case_b), ("links", world.case_b)]
        age(service.SWEEP_AFTER_SECONDS + 1)
        alerts = service.sweep().alerts
        assert [(a.agency_id, a.reason, a.link_type) for a in alerts] == [
            (world.isp.id, "one_link", "USES")]
        (msg,) = mail_to(smtp_service, world["spec_b"].user.email)
        assert alerts[0].number in str(msg["Subject"])
        for who in ("spec_a", "spec_fbi", "spec_hsi"):
            assert mail_to(smtp_service, world[who].user.email) == [], who


def test_a_refused_job_is_run_by_the_sweep_in_the_real_worker(
        celery_worker, smtp_service, tmp_path):
    """Commit through an app whose broker refuses; then the sweep, sent through the real
    Redis to the real worker process, delivers the alert to the real SMTP server."""
    down = create_app(environ={**celery_worker.environ, **refused_broker(),
                               "TASKFORCE_INSTANCE": str(tmp_path / "down"),
                               "TASKFORCE_BASE_URL": BASE})
    good = create_app(environ={**celery_worker.environ,
                               "TASKFORCE_INSTANCE": str(tmp_path / "good"),
                               "TASKFORCE_BASE_URL": BASE})
    assert down.extensions["celery"].conf.broker_url != good.extensions["celery"].conf.broker_url
    with good.app_context():
        db.create_all()
        world = build_world(suffix=f" {uuid.uuid4().hex[:6]}")
        survivor = add_survivor(world)
        trafficker = graph.add_entity(actor=world["lead_a"].actor, case_id=world.case_a,
                                      kind="person", label="Vic Tor", case_role="suspect")
        lead_id, case_a = world["lead_a"].user.id, world.case_a
        survivor_id, trafficker_id = survivor.id, trafficker.id
        emails = {who: world[who].user.email for who in (*CONCERNED, *UNCONCERNED)}
        spd = world.spd.id
        deadline = time.monotonic() + 20  # the worker finishes what the setup queued
        while time.monotonic() < deadline and db.session.scalar(
                select(func.count(AlertCheck.id)).where(AlertCheck.processed_at.is_(None))):
            time.sleep(0.1)
        db.session.remove()
    time.sleep(1.0)
    services.read_mail(smtp_service, count=0, timeout=0)

    with down.app_context():
        lead = Actor.for_user(db.session.get(User, lead_id))
        link = graph.add_link(actor=lead, case_id=case_a, source_id=trafficker_id,
                              target_id=survivor_id, type="CONTROLS")
        link_id = link.id
        check = db.session.scalars(select(AlertCheck).order_by(AlertCheck.id.desc())).first()
        assert check.link_ids == [link_id] and check.processed_at is None
        db.session.remove()
    time.sleep(1.0)
    for address in emails.values():  # the fast path never reached the worker
        assert mail_to(smtp_service, address) == []

    with good.app_context():
        time.sleep(service.SWEEP_AFTER_SECONDS)  # the sweep leaves younger checks alone
        good.extensions["celery"].tasks[tasks.sweep_alert_checks.name].delay()
        for who in CONCERNED:
            (msg,) = services.read_mail(smtp_service, timeout=15,
                                        match=lambda m, a=emails[who]: str(m["To"]) == a)
            assert "Survivor alert SA-" in str(msg["Subject"])
        for who in UNCONCERNED:
            assert mail_to(smtp_service, emails[who]) == [], who
        db.session.expire_all()
        assert db.session.get(AlertCheck, check.id).processed_at is not None
        mine = db.session.scalars(select(SurvivorAlert).where(
            SurvivorAlert.link_id == link_id, SurvivorAlert.agency_id == spd)).one()
        assert mine.reason == "link" and mine.link_type == "CONTROLS"
        db.session.remove()
