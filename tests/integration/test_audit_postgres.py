"""The audit trail on a real PostgreSQL (and, like every integration test, on SQLite too).

The database itself refuses UPDATE, DELETE and TRUNCATE; the advisory lock
keeps concurrent appends on one chain; tampering by the table's owner, who can
lift the guard, is still caught by `verify_chain`.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from taskforce.accounts.permissions import Actor
from taskforce.audit import service
from taskforce.audit.models import AuditEvent, install_append_only
from taskforce.extensions import db
from tests.concurrency import at_once

pytestmark = pytest.mark.integration

ANN = Actor(user_id=1, username="ann", agency_id=3, ip="192.0.2.1", user_agent="pytest")


def _record(n: int) -> None:
    for i in range(n):
        service.record(actor=ANN, action="case.read", object_type="case", object_id=i,
                       case_id=i + 1, details={"i": i, "note": "ünïcode ✓"})
    db.session.commit()


def _tamper(db_backend: str, sql: str) -> None:
    """What the table's owner could do: lift the guard, change a row, restore the guard."""
    with db.engine.begin() as conn:
        if db_backend == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
            conn.exec_driver_sql(sql)
            conn.exec_driver_sql("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_events_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_events_no_delete")
            conn.exec_driver_sql(sql)
            install_append_only(conn)


def test_the_database_refuses_update_delete_and_truncate(app, db_backend):
    _record(3)
    statements = ["UPDATE audit_events SET outcome = 'denied' WHERE seq = 2",
                  "UPDATE audit_events SET action = 'x.y' WHERE seq = -1",  # touches no row
                  "DELETE FROM audit_events WHERE seq = 3"]
    if db_backend == "postgresql":
        statements.append("TRUNCATE audit_events")
    refused = 0
    for sql in statements:
        try:
            with db.engine.begin() as conn:
                conn.exec_driver_sql(sql)
        except sa.exc.IntegrityError as exc:
            assert "append-only" in str(exc.orig)
            refused += 1
    # SQLite's triggers are per row, so a statement touching no row has nothing to refuse.
    assert refused == len(statements) - (db_backend == "sqlite")
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit_events")).scalar_one() == 3
    result = service.verify_chain()
    assert result.ok and result.count == 3


def test_the_guard_is_installed_once_however_often_it_is_asked(app):
    with db.engine.begin() as conn:
        install_append_only(conn)
        install_append_only(conn)
    _record(1)
    with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_events")


def test_concurrent_appends_keep_one_chain(app):
    threads, per_thread = 8, 12

    def writer(n: int) -> None:
        actor = Actor(user_id=n, username=f"user{n}", agency_id=n % 3)
        for i in range(per_thread):
            if i % 3 == 0:
                service.record_now(actor=actor, action="login.failure", outcome="denied")
            else:
                service.record(actor=actor, action="case.read", object_id=i)
                db.session.commit()

    at_once(app, writer, threads)  # re-raises a writer's error here
    seqs = db.session.scalars(sa.select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
    assert seqs == list(range(1, threads * per_thread + 1))
    result = service.verify_chain(batch_size=10)
    assert result.ok and result.count == threads * per_thread


def test_tampering_by_the_owner_is_caught(app, db_backend):
    _record(4)
    _tamper(db_backend, "UPDATE audit_events SET case_id = 99 WHERE seq = 2")
    result = service.verify_chain()
    assert not result.ok and result.broken_seq == 2 and "hash mismatch" in result.problem

    _tamper(db_backend, "DELETE FROM audit_events WHERE seq = 1")
    result = service.verify_chain()
    assert not result.ok and result.broken_seq == 2 and "seq 1 missing" in result.problem


class _ScratchBase(DeclarativeBase):
    pass


class Scratch(_ScratchBase):
    __tablename__ = "audit_it_scratch"
    id: Mapped[int] = mapped_column(primary_key=True)
    note: Mapped[str] = mapped_column(sa.String(50))


def test_record_now_beside_a_transaction_with_unflushed_and_flushed_writes(app, db_backend):
    """record_now commits only itself. On PostgreSQL the caller may even hold
    flushed, uncommitted rows; SQLite's single writer only allows pending ones."""
    _ScratchBase.metadata.create_all(db.engine)
    db.session.add(Scratch(note="pending"))
    if db_backend == "postgresql":
        db.session.flush()
    service.record_now(actor=ANN, action="login.failure", outcome="denied")
    db.session.rollback()
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit_it_scratch")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM audit_events")).scalar_one() == 1
    assert service.verify_chain().ok


def test_a_refused_request_is_recorded(app, client):
    assert client.get("/", headers={"Accept": "application/json"}).status_code == 401
    event = db.session.scalars(sa.select(AuditEvent)).one()
    assert (event.action, event.outcome, event.status_code) == (
        "request.web.dashboard", "denied", 401)
    assert service.verify_chain().ok
