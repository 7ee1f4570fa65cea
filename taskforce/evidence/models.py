"""Evidence tables: items, their custody ledger, and the per-case item counter.

An `EvidenceItem` is one exhibit of a case: a digital file (its bytes in the
evidence store under their SHA-256) or a physical item (a storage location,
no bytes). Its chain of custody is a run of `CustodyEvent` rows, numbered
`seq` 1, 2, ... per item, each carrying `prev_hash` (the hash of the item's
event before it; for seq 1 the item's genesis hash, which binds the chain to
the item's recorded SHA-256, MD5 and size) and `hash` (SHA-256 of every other
hashed field: see ledger.py). The ledger is append-only in the database
itself: triggers refuse UPDATE and DELETE (install_custody_append_only).

The item row keeps the head of its chain (`custody_seq`, `custody_hash`), so
cutting events off the end of a chain is detected too.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column, relationship

from taskforce import append_only
from taskforce.accounts.models import User, UtcDateTime, utcnow
from taskforce.extensions import db

KINDS = {"digital": "Digital file", "physical": "Physical item"}
SOURCES = {
    "device": "Device extraction",
    "subpoena_return": "Subpoena return",
    "import": "Import",
    "other": "Other",
}
CUSTODY_KINDS = {
    "COLLECTED": "Collected",
    "RECEIVED": "Received",
    "TRANSFERRED": "Transferred",
    "CHECKED_OUT": "Checked out",
    "CHECKED_IN": "Checked in",
    "ACCESSED": "Accessed",
    "EXPORTED": "Exported",
    "VERIFIED": "Verified",
    "SEALED": "Sealed",
    "RELEASED": "Released",
    "DISPOSED": "Disposed",
}
INTEGRITY = {"unverified": "Not re-checked yet", "ok": "Hash verified",
             "mismatch": "HASH MISMATCH", "missing": "BYTES MISSING"}

# Custody ledgers grow without end: 64-bit keys on PostgreSQL (SQLite only
# auto-numbers a primary key declared exactly INTEGER).
_BigKey = BigInteger().with_variant(Integer, "sqlite")


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class EvidenceCounter(db.Model):
    """The last item number handed out in a case (allocated by an atomic upsert)."""

    __tablename__ = "evidence_counters"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"),
                                         primary_key=True, autoincrement=False)
    last_value: Mapped[int] = mapped_column(Integer, default=0)


class EvidenceItem(db.Model):
    __tablename__ = "evidence_items"
    __table_args__ = (
        UniqueConstraint("case_id", "seq", name="case_seq"),
        CheckConstraint(_in("kind", KINDS), name="kind"),
        CheckConstraint(_in("source", SOURCES), name="source"),
        CheckConstraint(_in("integrity", INTEGRITY), name="integrity"),
        CheckConstraint("kind = 'physical' OR (sha256 IS NOT NULL AND size IS NOT NULL)",
                        name="digital_has_bytes"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within the case
    number: Mapped[str] = mapped_column(String(48), unique=True)  # <case number>-E0001
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))
    collected_by: Mapped[str] = mapped_column(String(200))  # a name: not always one of our users
    collected_at: Mapped[datetime] = mapped_column(UtcDateTime)
    collected_place: Mapped[str] = mapped_column(String(300), default="")
    # digital items: the bytes
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    md5: Mapped[str | None] = mapped_column(String(32))
    content_type: Mapped[str | None] = mapped_column(String(120))  # detected from the bytes
    original_filename: Mapped[str | None] = mapped_column(String(255))
    storage_backend: Mapped[str | None] = mapped_column(String(16))
    storage_key: Mapped[str | None] = mapped_column(String(200))
    # physical items: where it is kept
    storage_location: Mapped[str | None] = mapped_column(String(300))
    custodian_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    integrity: Mapped[str] = mapped_column(String(16), default="unverified")
    last_verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # head of the custody chain
    custody_seq: Mapped[int] = mapped_column(Integer, default=0)
    custody_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
    custodian: Mapped[User | None] = relationship(foreign_keys=[custodian_id])
    events: Mapped[list[CustodyEvent]] = relationship(
        back_populates="item", order_by=lambda: CustodyEvent.seq, viewonly=True)

    @property
    def is_digital(self) -> bool:
        return self.kind == "digital"

    def __repr__(self) -> str:
        return f"<EvidenceItem {self.number}>"


class CustodyEvent(db.Model):
    __tablename__ = "custody_events"
    __table_args__ = (
        UniqueConstraint("item_id", "seq", name="item_seq"),
        CheckConstraint(_in("kind", CUSTODY_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(_BigKey, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("evidence_items.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within the item, no gaps
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)  # no FK: kept as written
    username: Mapped[str | None] = mapped_column(String(150))  # snapshots at the time
    user_name: Mapped[str | None] = mapped_column(String(200))
    place: Mapped[str] = mapped_column(String(300), default="")  # where
    reason: Mapped[str] = mapped_column(Text, default="")  # why
    details: Mapped[str | None] = mapped_column(Text)  # canonical JSON text, hashed as stored
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    item: Mapped[EvidenceItem] = relationship(back_populates="events")

    def __repr__(self) -> str:
        return f"<CustodyEvent item {self.item_id} #{self.seq} {self.kind}>"


# --- append-only guard --------------------------------------------------------------------

def install_custody_append_only(connection: Connection) -> None:
    """Make custody_events refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL); the
    Alembic migration calls it too (`install_custody_append_only(op.get_bind())`)."""
    append_only.install(connection, "custody_events")


def remove_custody_append_only(connection: Connection) -> None:
    """The inverse, for a migration's downgrade (and tests that tamper on purpose)."""
    append_only.remove(connection, "custody_events")


@event.listens_for(CustodyEvent.__table__, "after_create")
def _guard_after_create(target, connection: Connection, **kw) -> None:
    install_custody_append_only(connection)


@event.listens_for(CustodyEvent.__table__, "after_drop")
def _unguard_after_drop(target, connection: Connection, **kw) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("DROP FUNCTION IF EXISTS custody_events_refuse_change()")
