"""The audit trail: one table, hash-chained, append-only in the database itself.

Each row carries `prev_hash` (the hash of the row before it in `seq` order;
64 zeros for the first) and `hash`, the SHA-256 of the canonical form of every
other field. Editing a row breaks its own hash; deleting or inserting one
breaks the `seq` run or the next row's `prev_hash`. `flask audit verify` walks
the chain (see service.verify_chain).

`id` is the storage key the database hands out and is deliberately not
hashed: it is unknown until the row is flushed, and the chain order is `seq`.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Integer,
    SmallInteger,
    String,
    Text,
    event,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from taskforce import append_only
from taskforce.extensions import db

OUTCOMES = ("success", "denied", "failed", "error")
GENESIS_HASH = "0" * 64

# Everything but `hash` (and the storage key `id`) goes into the hash.
HASHED_FIELDS = (
    "seq", "at", "user_id", "username", "agency_id", "action", "object_type", "object_id",
    "case_id", "outcome", "status_code", "ip", "user_agent", "details", "prev_hash",
)

# Audit tables grow without end: 64-bit keys on PostgreSQL. SQLite only
# auto-numbers a primary key declared exactly INTEGER.
_BigKey = BigInteger().with_variant(Integer, "sqlite")


class AuditEvent(db.Model):
    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint("outcome IN ('success', 'denied', 'failed', 'error')", name="outcome"),
    )

    id: Mapped[int] = mapped_column(_BigKey, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)  # chain position, gapless from 1
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)  # UTC, microseconds
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)  # no FK: the trail outlives users
    username: Mapped[str | None] = mapped_column(String(150), index=True)  # snapshot at the time
    agency_id: Mapped[int | None] = mapped_column(Integer, index=True)
    action: Mapped[str] = mapped_column(String(120), index=True)  # dotted verb: case.read
    object_type: Mapped[str | None] = mapped_column(String(60))
    object_id: Mapped[str | None] = mapped_column(String(120))
    case_id: Mapped[int | None] = mapped_column(Integer, index=True)
    outcome: Mapped[str] = mapped_column(String(10))
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    ip: Mapped[str | None] = mapped_column(String(45))  # longest textual IPv6
    user_agent: Mapped[str | None] = mapped_column(String(400))
    details: Mapped[str | None] = mapped_column(Text)  # canonical JSON text, hashed as stored
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"<AuditEvent #{self.seq} {self.action} {self.outcome}>"


def format_at(at: datetime) -> str:
    """The one text form of an event time: UTC, microseconds, 'Z'.

    SQLite hands datetimes back without a zone (we only ever store UTC);
    PostgreSQL hands them back in the session's zone: both normalise here.
    """
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(values: Mapping[str, Any]) -> bytes:
    """Sorted-key compact JSON of the hashed fields; ASCII so no encoding question arises."""
    doc = {name: values.get(name) for name in HASHED_FIELDS}
    doc["at"] = format_at(values["at"])
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def compute_hash(values: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(values)).hexdigest()


# --- append-only guard --------------------------------------------------------------------

def install_append_only(connection: Connection) -> None:
    """Make audit_events refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL); the
    Alembic migration calls it too (`install_append_only(op.get_bind())`)."""
    append_only.install(connection, "audit_events")


def remove_append_only(connection: Connection) -> None:
    """The inverse, for a migration's downgrade (and tests that tamper on purpose)."""
    append_only.remove(connection, "audit_events")


@event.listens_for(AuditEvent.__table__, "after_create")
def _guard_after_create(target, connection: Connection, **kw) -> None:
    install_append_only(connection)


@event.listens_for(AuditEvent.__table__, "after_drop")
def _unguard_after_drop(target, connection: Connection, **kw) -> None:
    # The table's triggers went with it; the PostgreSQL function stays unless dropped.
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("DROP FUNCTION IF EXISTS audit_events_refuse_change()")
