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


def _checks(engine) -> dict[str, set[str]]:
    """Table -> names of its CHECK constraints, as the database reports them."""
    inspector = sa.inspect(engine)
    return {table: {c["name"] for c in inspector.get_check_constraints(table)}
            for table in inspector.get_table_names() if table != "alembic_version"}


def test_upgrade_has_every_check_constraint_of_the_models(bare_app, db_backend):
    """Autogenerate does not compare CHECK constraints, so a rule added to a model (a new
    status, a new hit kind) would be silently missing from migrated databases."""
    upgrade()
    migrated = _checks(db.engine)
    expected = {table.name: {_ck_name(table, c) for c in table.constraints
                             if isinstance(c, sa.CheckConstraint)}
                for table in db.metadata.sorted_tables}
    missing = {t: sorted(names - migrated.get(t, set()))
               for t, names in expected.items() if names - migrated.get(t, set())}
    assert missing == {}, f"CHECK constraints missing after upgrade on {db_backend}"
    # and each one says what the model says: the rule's text, compared loosely
    inspector = sa.inspect(db.engine)
    for table in db.metadata.sorted_tables:
        reported = {c["name"]: c["sqltext"] for c in inspector.get_check_constraints(table.name)}
        for c in table.constraints:
            if isinstance(c, sa.CheckConstraint):
                quoted = {w for w in _words(str(c.sqltext)) if w.startswith("'")}
                name = _ck_name(table, c)
                assert quoted <= set(_words(reported[name])), (
                    f"{table.name}.{name} differs after upgrade on {db_backend}: "
                    f"{reported[name]!r} vs {c.sqltext}")


def _ck_name(table, constraint) -> str:
    """The name the naming convention gives it in the database (extensions.naming)."""
    name = str(constraint.name)
    return name if name.startswith("ck_") else f"ck_{table.name}_{name}"


def _words(text: str) -> list[str]:
    import re

    return re.findall(r"'[^']*'|\w+", text)


def test_upgrade_moves_an_entity_s_facts_to_the_case_that_entered_it(bare_app, db_backend):
    """Before per-case facts, a phone shared by two cases carried one label and one set of
    notes that both cases read. The upgrade gives them to the case that entered the entity
    first; the later case keeps only the shared identifier (need to know)."""
    upgrade(revision="c6600e657c3f")
    at = "2025-01-0{} 00:00:00+00:00"
    with db.engine.begin() as conn:
        if db_backend == "postgresql":  # rows without their users and cases: FKs off here
            conn.execute(sa.text("SET session_replication_role = replica"))
        conn.execute(sa.text(
            "INSERT INTO entities (id, kind, label, props, created_at, updated_at) VALUES "
            "(1, 'phone', 'Dante burner', :props, :t, :t)"),
            {"props": '{"notes": "bought at a gas station"}', "t": at.format(1)})
        conn.execute(sa.text(
            "INSERT INTO identifiers (id, entity_id, kind, value, display, created_at) VALUES "
            "(1, 1, 'phone', '+13125550101', '(312) 555-0101', :t),"
            "(2, 1, 'imei', '490154203237518', '490154203237518', :t)"), {"t": at.format(1)})
        conn.execute(sa.text(
            "INSERT INTO case_entities (id, case_id, entity_id, role, added_at) VALUES "
            "(1, 7, 1, NULL, :later), (2, 3, 1, NULL, :first)"),
            {"later": at.format(5), "first": at.format(2)})
    upgrade()
    with db.engine.connect() as conn:
        rows = {r.case_id: r for r in conn.execute(sa.text(
            "SELECT case_id, label, props, identifier_keys FROM case_entities"))}
        columns = {c["name"] for c in sa.inspect(conn).get_columns("entities")}

    def as_json(value):
        import json

        return json.loads(value) if isinstance(value, str) else value

    first, later = rows[3], rows[7]
    assert first.label == "Dante burner"
    assert as_json(first.props) == {"notes": "bought at a gas station"}
    assert as_json(first.identifier_keys) == [["phone", "+13125550101"],
                                              ["imei", "490154203237518"]]
    assert later.label == "(312) 555-0101" and as_json(later.props) == {}
    assert as_json(later.identifier_keys) == [["phone", "+13125550101"]]
    assert not {"label", "props"} & columns


def test_upgrade_gives_registrations_their_64_bit_keys(bare_app, db_backend):
    """The target index seeks key64 since dadf87b16cff: registrations made before it get
    the key the service computes (plain and blind), and the exact check finds them."""
    from taskforce.deconfliction import blind

    upgrade(revision="ee51c41518c7")
    tag = blind.Keyring(True, b"k" * 32).value_key("phone", "+13125550101")
    rows = [(1, "phone", "+13125550101", "plain"), (2, "email", "x@example.com", "plain"),
            (3, "phone", tag, "hmac1:abcd")]
    with db.engine.begin() as conn:
        if db_backend == "postgresql":  # rows without their users and cases: FKs off here
            conn.execute(sa.text("SET session_replication_role = replica"))
        for rid, kind, value_key, scheme in rows:
            conn.execute(sa.text(
                "INSERT INTO target_registrations (id, kind, value_key, scheme, agency_id, "
                "case_id, poc_name, poc_phone, poc_email, registered_at, expires_at) VALUES "
                "(:id, :kind, :vk, :scheme, 1, 4, 'Det. Ruiz', '', '', :t, :t)"),
                {"id": rid, "kind": kind, "vk": value_key, "scheme": scheme,
                 "t": "2026-01-01 00:00:00+00:00"})
    upgrade()
    with db.engine.connect() as conn:
        got = {r.id: (r.key64, r.key_slot) for r in conn.execute(sa.text(
            "SELECT id, key64, key_slot FROM target_registrations"))}
    for rid, kind, value_key, scheme in rows:
        assert got[rid] == (blind.key64(kind, value_key, scheme != "plain"), 0), rid


def test_upgrade_gives_unique_constraints_their_model_column_order(bare_app, db_backend):
    """Autogenerate does not see a reordered unique constraint, yet the order decides
    which lookups its index serves (the exact deconfliction check seeks kind, value_key)."""
    upgrade()
    inspector = sa.inspect(db.engine)
    for table in db.metadata.sorted_tables:
        reported = {u["name"]: u["column_names"]
                    for u in inspector.get_unique_constraints(table.name)}
        for c in table.constraints:
            if isinstance(c, sa.UniqueConstraint) and c.name in reported:
                assert reported[c.name] == [col.name for col in c.columns], (
                    f"{table.name}.{c.name} columns differ after upgrade on {db_backend}")
