"""The outbox of survivor-alert checks (models.AlertCheck), in-process (Celery eager:
the fast-path job runs right after the commit): one check per commit that writes
memberships or links, savepoints, failures counted and tried again with backoff, a
check given up after the maximum, the in-process sweep, and the beat entry.
"""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from taskforce.accounts.models import utcnow
from taskforce.extensions import db
from taskforce.graph.models import CaseEntity, Entity, Link
from taskforce.victims import service, tasks
from taskforce.victims.models import AlertCheck, SurvivorAlert
from tests.unit.test_victims_alerts import add_phone, add_survivor, all_alerts, build_world


@pytest.fixture()
def world(app):
    return build_world()


def checks() -> list[AlertCheck]:
    db.session.expire_all()
    return list(db.session.scalars(select(AlertCheck).order_by(AlertCheck.id)))


def victim_in(case_id: int, pseudonym: str) -> CaseEntity:
    e = Entity(kind="person", pseudonym=pseudonym)
    db.session.add(e)
    db.session.flush()
    ce = CaseEntity(case_id=case_id, entity_id=e.id, role="victim")
    db.session.add(ce)
    return ce


def broken_check(**extra) -> int:
    """A check whose evaluation fails for real: its bulk entry names no case id."""
    check = AlertCheck(bulk=[["links", "not-a-case", 0]], created_at=utcnow()
                       - timedelta(minutes=1), attempts=0, **extra)
    db.session.add(check)
    db.session.commit()
    return check.id


def test_a_commit_writes_one_check_and_the_fast_path_runs_it(app, world):
    before = len(checks())
    survivor = add_survivor(world)
    new = checks()[before:]
    assert len(new) == 1
    (check,) = new
    assert check.processed_at is not None and check.attempts == 0 and check.last_error is None
    assert {ce.id for ce in survivor.case_links} <= set(check.case_entity_ids)
    assert len(all_alerts()) == 2
    assert service.outbox_status() == {"waiting": 0, "failing": 0, "given_up": 0,
                                       "oldest_waiting_seconds": None}


def test_a_write_concerning_nobody_still_gets_its_check_and_raises_nothing(app, world):
    before = len(checks())
    add_phone(world, "(312) 555-0111")
    (check,) = checks()[before:]
    assert check.processed_at is not None
    assert all_alerts() == []


def test_a_savepoint_leaves_the_check_to_the_outer_commit(app, world):
    before = len(checks())
    first = victim_in(world.case_a, "Survivor-SAV1")
    db.session.flush()
    with db.session.begin_nested():
        victim_in(world.case_b, "Survivor-SAV2")
    assert len(checks()) == before  # the savepoint's release wrote no check
    nested = db.session.begin_nested()
    victim_in(world.case_b, "Survivor-SAV3")
    db.session.flush()
    nested.rollback()  # forgets its own rows, not what the outer transaction noted
    db.session.commit()
    (check,) = checks()[before:]
    assert first.id in check.case_entity_ids and check.processed_at is not None
    alerted = {(a.entity_id, a.agency_id) for a in all_alerts()}
    assert (first.entity_id, world.spd.id) in alerted
    assert {a.reason for a in all_alerts()} == {"in_case"}
    pseudonyms = set(db.session.scalars(select(Entity.pseudonym).join(
        SurvivorAlert, SurvivorAlert.entity_id == Entity.id)))
    assert pseudonyms == {"Survivor-SAV1", "Survivor-SAV2"}


def test_a_failing_check_is_counted_tried_later_then_given_up(app, world, caplog):
    check_id = broken_check()
    assert service.run_checks([check_id]) == []
    check = db.session.get(AlertCheck, check_id)
    assert check.processed_at is None and check.attempts == 1
    assert check.last_error.startswith("ValueError")
    assert check.retry_at > utcnow() + timedelta(seconds=service.RETRY_BASE_SECONDS - 2)
    assert service.sweep(older_than=0).due == 0  # not before its retry time
    status = service.outbox_status()
    assert (status["waiting"], status["failing"], status["given_up"]) == (1, 1, 0)

    check.retry_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert service.sweep().due == 1
    check = db.session.get(AlertCheck, check_id)
    assert check.attempts == 2
    assert check.retry_at > utcnow() + timedelta(seconds=2 * service.RETRY_BASE_SECONDS - 2)

    check.attempts, check.retry_at = service.CHECK_ATTEMPTS_MAX - 1, utcnow()
    db.session.commit()
    with caplog.at_level(logging.ERROR, logger="taskforce.victims.service"):
        assert service.sweep().due == 1
    assert any("no longer tried" in r.getMessage() for r in caplog.records)
    check = db.session.get(AlertCheck, check_id)
    check.retry_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    assert service.sweep().due == 0  # given up: a person must look
    status = service.outbox_status()
    assert (status["waiting"], status["failing"], status["given_up"]) == (1, 0, 1)
    assert status["oldest_waiting_seconds"] >= 60


def test_in_process_the_next_commit_runs_a_check_left_waiting(app, world):
    """No broker, no beat (the embedded default): the fast-path job of the next commit
    sweeps too. The waiting check names a link written past the watch (a raw
    connection insert), so nothing else could have alerted it."""
    survivor = add_survivor(world)
    phone = add_phone(world, "(312) 555-0122")
    alerts_before = len(all_alerts())
    link_id = db.session.connection().execute(Link.__table__.insert().values(
        case_id=world.case_a, source_id=phone.id, target_id=survivor.id, type="CALLED",
        provenance_kind="manual", count=1, confidence=1.0, created_at=utcnow(),
        updated_at=utcnow())).inserted_primary_key[0]
    db.session.add(AlertCheck(link_ids=[link_id], attempts=0,
                              created_at=utcnow() - timedelta(minutes=1)))
    db.session.commit()
    assert len(all_alerts()) == alerts_before
    add_phone(world, "(312) 555-0123")  # any commit with a check of its own
    new = {(a.link_id, a.reason, a.agency_id) for a in all_alerts()[alerts_before:]}
    assert new == {(link_id, "link", world.spd.id), (link_id, "link", world.fbi.id)}
    assert service.outbox_status()["waiting"] == 0


def test_done_checks_are_forgotten_after_a_week(app, world):
    add_phone(world, "(312) 555-0133")
    add_phone(world, "(312) 555-0134")
    old, recent = checks()[-2:]
    old.processed_at = utcnow() - timedelta(days=service.KEEP_DONE_DAYS + 1)
    recent.processed_at = utcnow() - timedelta(days=1)
    old_id, recent_id = old.id, recent.id
    db.session.commit()
    assert service.sweep().forgotten == 1
    left = set(db.session.scalars(select(AlertCheck.id)))
    assert recent_id in left and old_id not in left


def test_the_sweep_is_scheduled_on_the_alerts_queue(app):
    entry = app.extensions["celery"].conf.beat_schedule[tasks.SWEEP_ENTRY]  # by init_app
    assert entry["task"] == "taskforce.victims.tasks.sweep_alert_checks"
    assert entry["schedule"] == tasks.SWEEP_EVERY_SECONDS
    assert "queue" not in entry["options"]
    app.config["VICTIMS_ALERT_QUEUE"] = "alerts"
    entry = tasks.beat_entry(app)
    assert entry["options"]["queue"] == "alerts"
    assert entry["options"]["expires"] >= tasks.SWEEP_EVERY_SECONDS
    assert "taskforce.victims.tasks.sweep_alert_checks" in app.extensions["celery"].tasks


def test_a_large_write_is_split_into_checks_of_batch_ids_each_run(app, world, monkeypatch):
    from taskforce.victims import hooks

    monkeypatch.setattr(hooks, "BATCH", 2)  # 2,000 in production: the same split, smaller
    before = len(checks())
    written = [victim_in(world.case_b, f"Survivor-BAT{n}") for n in range(5)]
    db.session.commit()
    new = checks()[before:]
    assert [len(c.case_entity_ids) for c in new] == [2, 2, 1]
    assert sorted(i for c in new for i in c.case_entity_ids) == sorted(ce.id for ce in written)
    assert all(c.processed_at is not None for c in new)
    assert len([a for a in all_alerts() if a.agency_id == world.isp.id]) == 5
