"""Tables the database itself refuses to change: the audit trail, the custody ledger.

Triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL). `install` runs
after create_all() creates the table and from the Alembic migrations;
`remove` is for downgrades and for tests that tamper on purpose.
"""
from __future__ import annotations

from sqlalchemy.engine import Connection


def _sqlite(table: str) -> tuple[str, ...]:
    return tuple(
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {op} refused'); END"
        for op in ("UPDATE", "DELETE"))


def _postgres(table: str) -> tuple[str, ...]:
    # Statement-level, so it also fires for TRUNCATE and for statements touching no
    # row. SQLSTATE 23001 (restrict_violation) surfaces as an IntegrityError, as
    # SQLite's RAISE(ABORT) does. No '%' in the text: drivers read it as a placeholder.
    return (
        f"""CREATE OR REPLACE FUNCTION {table}_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $body$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'restrict_violation',
        MESSAGE = '{table} is append-only: ' || TG_OP || ' refused';
END
$body$""",
        f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
        (f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {table} "
         f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_refuse_change()"),
    )


def install(connection: Connection, table: str) -> None:
    """Idempotent."""
    name = connection.dialect.name
    if name == "sqlite":
        statements = _sqlite(table)
    elif name == "postgresql":
        statements = _postgres(table)
    else:
        raise NotImplementedError(f"no append-only guard for the {name} dialect")
    for statement in statements:
        # exec_driver_sql: the text goes to the driver untouched (no bind-parameter parsing).
        connection.exec_driver_sql(statement)


def remove(connection: Connection, table: str) -> None:
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_update")
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    elif connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {table}_refuse_change()")
