"""`flask db upgrade` builds exactly the schema the models describe, on SQLite
and on PostgreSQL, with the audit trail append-only from the first migration."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from taskforce import create_app
from taskforce.extensions import db

pytestmark = pytest.mark.integration


@pytest.fixture()
def bare_app(app_environ):
    """An app whose database has no tables yet (no create_all)."""
    app = create_app(environ=app_environ)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def _diff(engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, db.metadata)


def test_upgrade_gives_the_models_schema(bare_app, db_backend):
    upgrade()
    diff = _diff(db.engine)
    assert diff == [], f"models and migrations differ on {db_backend}: {diff}"


def test_audit_trail_is_append_only_after_upgrade(bare_app):
    upgrade()
    with db.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO audit_events (seq, at, action, outcome, prev_hash, hash) "
            "VALUES (1, CURRENT_TIMESTAMP, 'test.insert', 'success', :z, :z)"), {"z": "0" * 64})
    for statement in ("UPDATE audit_events SET action = 'edited'", "DELETE FROM audit_events"):
        with pytest.raises(sa.exc.DatabaseError), db.engine.begin() as conn:
            conn.execute(sa.text(statement))
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT action FROM audit_events")).scalar_one() == "test.insert"


def test_downgrade_to_nothing_and_back(bare_app):
    upgrade()
    downgrade(revision="base")
    assert "users" not in sa.inspect(db.engine).get_table_names()
    upgrade()
    assert "users" in sa.inspect(db.engine).get_table_names()
