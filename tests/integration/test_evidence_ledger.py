"""The custody ledger's database guard and checks on both databases (PostgreSQL included)."""
from __future__ import annotations

import io

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from taskforce.evidence import service
from taskforce.evidence.models import install_custody_append_only, remove_custody_append_only
from taskforce.extensions import db
from tests.factories_investigations import make_case, person

pytestmark = pytest.mark.integration


@pytest.fixture()
def item(app):
    from taskforce import evidence

    if "evidence" not in app.blueprints:
        evidence.init_app(app)
    _, actor = person()
    case_id = make_case(actor)
    item = service.ingest(actor=actor, case_id=case_id, stream=io.BytesIO(b"exhibit"),
                          description="exhibit")
    service.download(actor=actor, item_id=item.id)
    db.session.rollback()
    return item


def test_database_refuses_changes(item):
    statements = ["UPDATE custody_events SET reason = 'rewritten'", "DELETE FROM custody_events"]
    if db.engine.dialect.name == "postgresql":  # SQLite has no TRUNCATE (DELETE covers it)
        statements.append("TRUNCATE custody_events")
    for statement in statements:
        with pytest.raises(IntegrityError, match="append-only"), db.engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert service.verify_ledger().ok


def test_guard_is_idempotent_and_edits_are_named(item):
    with db.engine.begin() as conn:
        install_custody_append_only(conn)  # again: what a migration may do
        remove_custody_append_only(conn)
        conn.execute(text("UPDATE custody_events SET reason = 'rewritten' "
                          "WHERE item_id = :i AND seq = 2"), {"i": item.id})
        install_custody_append_only(conn)
    result = service.verify_ledger()
    assert not result.ok and (result.item_id, result.seq) == (item.id, 2)
    assert "edited" in result.problem
