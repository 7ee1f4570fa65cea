"""The audit chain: appending, the database guard, tamper detection, `flask audit verify`."""
from __future__ import annotations

import re
import sqlite3
from datetime import UTC

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from taskforce.accounts.permissions import Actor
from taskforce.audit import service
from taskforce.audit.models import (
    GENESIS_HASH,
    HASHED_FIELDS,
    AuditEvent,
    compute_hash,
    format_at,
    install_append_only,
)
from taskforce.extensions import db
from tests.concurrency import at_once

ANN = Actor(user_id=1, username="ann", agency_id=10, roles=frozenset({"investigator"}),
            ip="10.1.2.3", user_agent="pytest")


def _record(n: int, **kw) -> None:
    for i in range(n):
        service.record(actor=ANN, action="case.read", object_type="case", object_id=i,
                       case_id=i + 1, details={"i": i}, **kw)
    db.session.commit()


def _raw(app) -> sqlite3.Connection:
    """A connection behind the app's back, as someone with the database file would have."""
    return sqlite3.connect(db.engine.url.database)


def _tamper(app, sql: str, params: tuple = ()) -> None:
    """Lift the guard, change the table, put the guard back."""
    raw = _raw(app)
    with raw:
        raw.execute("DROP TRIGGER audit_events_no_update")
        raw.execute("DROP TRIGGER audit_events_no_delete")
        raw.execute(sql, params)
    raw.close()
    with db.engine.begin() as conn:
        install_append_only(conn)


def _rows() -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)))


# --- appending ----------------------------------------------------------------------------

def test_events_chain_from_genesis_and_verify(app):
    _record(3)
    rows = _rows()
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == GENESIS_HASH
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    for r in rows:  # the stored hash is the hash of the stored fields
        assert r.hash == compute_hash({f: getattr(r, f) for f in HASHED_FIELDS})
    first = rows[0]
    assert (first.user_id, first.username, first.agency_id) == (1, "ann", 10)
    assert (first.ip, first.user_agent, first.case_id, first.object_id) == (
        "10.1.2.3", "pytest", 1, "0")
    assert first.details == '{"i":0}'
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", format_at(first.at))

    result = service.verify_chain()
    assert result.ok and result.count == 3
    assert result.head_seq == 3 and result.head_hash == rows[-1].hash
    assert result.message == "audit trail intact: 3 events"


def test_an_event_commits_or_rolls_back_with_its_transaction(app):
    service.record(actor=ANN, action="case.update", object_type="case", object_id=1)
    db.session.rollback()
    assert _rows() == []
    _record(1)
    assert [r.seq for r in _rows()] == [1]  # the rolled-back append left no gap
    assert service.verify_chain().ok


@pytest.mark.parametrize("field", [f for f in HASHED_FIELDS if f != "at"])
def test_the_hash_covers_every_field(field):
    from datetime import datetime

    values = {f: None for f in HASHED_FIELDS}
    values.update(seq=1, at=datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
                  action="case.read", outcome="success", prev_hash=GENESIS_HASH)
    before = compute_hash(values)
    changed = dict(values, **{field: 7})  # no field holds 7 above
    assert compute_hash(changed) != before


def test_time_is_canonical_whatever_the_zone():
    from datetime import datetime, timedelta, timezone

    utc = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    elsewhere = utc.astimezone(timezone(timedelta(hours=-5)))
    naive = utc.replace(tzinfo=None)  # how SQLite hands it back
    assert format_at(utc) == format_at(elsewhere) == format_at(naive) == "2025-01-02T03:04:05.000006Z"


def test_bad_events_are_refused():
    with pytest.raises(ValueError, match="dotted"):
        service.record(actor=ANN, action="Read Case")
    with pytest.raises(ValueError, match="outcome"):
        service.record(actor=ANN, action="case.read", outcome="maybe")
    with pytest.raises(ValueError, match="limit"):
        service.record(actor=ANN, action="case.read", details={"blob": "x" * 5000})


def test_oversized_values_are_clipped_before_hashing(app):
    long_agent = Actor(user_id=1, username="ann", user_agent="A\x00" + "b" * 1000, ip="::1")
    service.record(actor=long_agent, action="case.read")
    db.session.commit()
    stored = _rows()[0]
    assert stored.user_agent == "A" + "b" * 399  # NUL dropped, clipped to the column
    assert service.verify_chain().ok


# --- the database guard -------------------------------------------------------------------

def test_the_database_refuses_update_and_delete(app):
    _record(2)
    raw = _raw(app)
    for sql in ("UPDATE audit_events SET action = 'case.delete' WHERE seq = 1",
                "DELETE FROM audit_events WHERE seq = 2"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute(sql)
    raw.rollback()
    raw.close()

    with pytest.raises(sa.exc.IntegrityError, match="append-only"):
        db.session.execute(sa.delete(AuditEvent))
    db.session.rollback()
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.seq == 1))
    event.outcome = "denied"  # an ORM edit meets the same wall
    with pytest.raises(sa.exc.IntegrityError, match="append-only"):
        db.session.commit()
    db.session.rollback()
    assert [r.action for r in _rows()] == ["case.read", "case.read"]
    assert service.verify_chain().ok


# --- tamper detection ---------------------------------------------------------------------

def test_an_edited_event_is_named(app):
    _record(5)
    third = _rows()[2]
    _tamper(app, "UPDATE audit_events SET username = 'someone_else' WHERE seq = 3")
    result = service.verify_chain()
    assert not result.ok
    assert (result.broken_seq, result.broken_id) == (3, third.id)
    assert "hash mismatch" in result.problem and "edited" in result.problem
    assert result.count == 2
    raw = _raw(app)  # and the guard is back
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute("UPDATE audit_events SET username = 'x'")
    raw.close()


def test_an_edit_that_rehashes_its_row_breaks_the_next_link(app):
    _record(5)
    third = {f: getattr(_rows()[2], f) for f in HASHED_FIELDS}
    third["username"] = "someone_else"
    _tamper(app, "UPDATE audit_events SET username = ?, hash = ? WHERE seq = 3",
            ("someone_else", compute_hash(third)))
    result = service.verify_chain()
    assert not result.ok and result.broken_seq == 4
    assert "prev_hash mismatch" in result.problem and "seq 3" in result.problem


def test_a_deleted_event_is_named_as_a_gap(app):
    _record(5)
    _tamper(app, "DELETE FROM audit_events WHERE seq = 2")
    result = service.verify_chain(batch_size=2)
    assert not result.ok and result.broken_seq == 3
    assert "seq gap" in result.problem and "seq 2 missing" in result.problem


def test_deleting_the_first_events_is_caught(app):
    _record(3)
    _tamper(app, "DELETE FROM audit_events WHERE seq <= 2")
    result = service.verify_chain()
    assert not result.ok and result.broken_seq == 3
    assert "seq 1..2 missing" in result.problem


# --- record_now ---------------------------------------------------------------------------

class _ScratchBase(DeclarativeBase):
    pass


class Scratch(_ScratchBase):
    """A stand-in for the caller's own change (kept out of the app's metadata)."""

    __tablename__ = "audit_test_scratch"
    id: Mapped[int] = mapped_column(primary_key=True)
    note: Mapped[str] = mapped_column(sa.String(50))


def _count(table: str) -> int:
    with db.engine.connect() as conn:  # a fresh look, outside the test's session
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_record_now_survives_the_callers_rollback_and_commits_nothing_of_its(app):
    _ScratchBase.metadata.create_all(db.engine)
    db.session.add(Scratch(note="the caller's pending change"))
    event = service.record_now(actor=ANN, action="login.failure", outcome="denied",
                               details={"reason": "wrong password"})
    assert event.seq == 1 and event.id is not None
    assert _count("audit_events") == 1
    assert _count("audit_test_scratch") == 0  # the caller's object was not committed
    db.session.rollback()  # what the error handler does
    assert _count("audit_events") == 1
    assert _count("audit_test_scratch") == 0
    assert service.verify_chain().ok


def test_record_now_refuses_to_wait_on_its_own_callers_lock(app):
    service.record(actor=ANN, action="case.read")
    with pytest.raises(RuntimeError, match="commit or roll back first"):
        service.record_now(actor=ANN, action="login.failure", outcome="denied")
    db.session.rollback()
    service.record_now(actor=ANN, action="login.failure", outcome="denied")  # now it may
    assert _count("audit_events") == 1


def test_concurrent_appends_never_fork_the_chain(app):
    """Writers racing for the head: every append lands, seq stays gapless, chain verifies."""
    threads, per_thread = 6, 10

    def writer(n: int) -> None:
        for i in range(per_thread):
            actor = Actor(user_id=n, username=f"user{n}")
            if i % 2:
                service.record_now(actor=actor, action="login.failure", outcome="denied")
            else:
                service.record(actor=actor, action="case.read", object_id=i)
                db.session.commit()

    at_once(app, writer, threads)  # re-raises a writer's error here
    assert [r.seq for r in _rows()] == list(range(1, threads * per_thread + 1))
    result = service.verify_chain(batch_size=7)
    assert result.ok and result.count == threads * per_thread


# --- flask audit verify -------------------------------------------------------------------

def test_cli_verify_says_intact_and_exits_0(app, runner):
    _record(3)
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "audit trail intact: 3 events" in result.stdout
    assert f"hash {_rows()[-1].hash}" in result.stdout


def test_cli_verify_on_an_empty_trail(app, runner):
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0
    assert "audit trail intact: 0 events" in result.stdout


def test_cli_verify_names_the_first_broken_link_and_exits_1(app, runner):
    _record(6)
    victim = _rows()[3]
    _tamper(app, "UPDATE audit_events SET outcome = 'success', action = 'case.export' "
                 "WHERE seq = 4")
    _tamper(app, "DELETE FROM audit_events WHERE seq = 5")  # a later break is not the first
    result = runner.invoke(args=["audit", "verify", "--batch-size", "2"])
    assert result.exit_code == 1
    assert f"BROKEN at seq 4 (id {victim.id}): hash mismatch" in result.stderr
    assert "events before it verified: 3" in result.stderr
    assert "intact" not in result.stdout


def test_cli_verify_names_a_gap(app, runner):
    _record(4)
    _tamper(app, "DELETE FROM audit_events WHERE seq = 3")
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert "BROKEN at seq 4" in result.stderr and "seq 3 missing" in result.stderr
