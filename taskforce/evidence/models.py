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
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
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
    "MOVED": "Moved to another storage location",
    "TRANSFERRED": "Transferred",
    # a hand-over that did not happen is custody history too ("who offered it to whom")
    "TRANSFER_REFUSED": "Hand-over refused",
    "TRANSFER_WITHDRAWN": "Hand-over withdrawn",
    "CHECKED_OUT": "Checked out",
    "CHECKED_IN": "Checked in",
    "ACCESSED": "Accessed",
    "EXPORTED": "Exported",
    "VERIFIED": "Verified",
    "SEALED": "Sealed",
    "RELEASED": "Released",
    "DISPOSED": "Disposed",
    "LEGAL_HOLD_SET": "Legal hold set",
    "LEGAL_HOLD_CLEARED": "Legal hold cleared",
}
INTEGRITY = {"unverified": "Not re-checked yet", "ok": "Hash verified",
             "mismatch": "HASH MISMATCH", "missing": "BYTES MISSING"}
# Where an item stands in its custody lifecycle (service.py moves it, with an event each time).
STATES = {
    "in_custody": "In custody",
    "checked_out": "Checked out",
    "sealed": "Sealed",
    "released": "Released",
    "disposed": "Disposed",
}
TRANSFER_STATUSES = {"pending": "Waiting for the receiver", "accepted": "Accepted",
                     "refused": "Refused", "cancelled": "Cancelled"}
PACKAGE_STATUSES = {"building": "Building", "ready": "Ready", "failed": "Failed"}

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
        CheckConstraint(_in("state", STATES), name="state"),
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
    # custody lifecycle (the events say why; these say where it stands now)
    state: Mapped[str] = mapped_column(String(16), default="in_custody",
                                       server_default="in_custody")
    checked_out_to: Mapped[str | None] = mapped_column(String(300))  # e.g. the lab
    expected_return_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # survivor protection: an item that identifies a survivor is withheld from prosecutor
    # packages until a victim specialist releases it
    identifies_survivor: Mapped[bool] = mapped_column(Boolean, default=False,
                                                      server_default=false())
    survivor_flagged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    survivor_released_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    survivor_released_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
    custodian: Mapped[User | None] = relationship(foreign_keys=[custodian_id])
    events: Mapped[list[CustodyEvent]] = relationship(
        back_populates="item", order_by=lambda: CustodyEvent.seq, viewonly=True)

    @property
    def is_digital(self) -> bool:
        return self.kind == "digital"

    @property
    def withheld_from_packages(self) -> bool:
        return self.identifies_survivor and self.survivor_released_at is None

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
    kind: Mapped[str] = mapped_column(String(32))
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

    @property
    def summary(self) -> str:
        """One sentence saying what happened, from the kind and the details (for the
        item page; the custody report writes the same)."""
        import json

        from taskforce.evidence.reports import event_summary

        return event_summary(self.kind, json.loads(self.details) if self.details else None)

    def __repr__(self) -> str:
        return f"<CustodyEvent item {self.item_id} #{self.seq} {self.kind}>"


# --- custody lifecycle, legal holds, survivor releases, prosecutor packages -------------

class CustodyTransfer(db.Model):
    """A hand-over waiting for (or decided by) the receiver. TRANSFERRED is appended
    to the ledger only when the receiver accepts: until then the giver holds it."""

    __tablename__ = "custody_transfers"
    __table_args__ = (CheckConstraint(_in("status", TRANSFER_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("evidence_items.id"), index=True)
    from_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    to_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    place: Mapped[str] = mapped_column(String(300), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decision_note: Mapped[str | None] = mapped_column(Text)

    item: Mapped[EvidenceItem] = relationship()
    from_user: Mapped[User | None] = relationship(foreign_keys=[from_user_id])
    to_user: Mapped[User] = relationship(foreign_keys=[to_user_id])
    requested_by: Mapped[User | None] = relationship(foreign_keys=[requested_by_id])


class LegalHold(db.Model):
    """A legal hold on every item of a case, set and cleared by a supervisor. While
    one is active, disposal is refused; on S3 each object carries an object legal hold."""

    __tablename__ = "evidence_legal_holds"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    set_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    set_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    cleared_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    cleared_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    clear_reason: Mapped[str | None] = mapped_column(Text)

    set_by: Mapped[User | None] = relationship(foreign_keys=[set_by_id])
    cleared_by: Mapped[User | None] = relationship(foreign_keys=[cleared_by_id])

    @property
    def active(self) -> bool:
        return self.cleared_at is None


class SurvivorRelease(db.Model):
    """A victim specialist's release of one survivor's identity for prosecutor packages
    of one case. Without it, packages show the survivor's pseudonym."""

    __tablename__ = "survivor_releases"
    __table_args__ = (UniqueConstraint("case_id", "entity_id",
                                       name="survivor_release_case_entity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("entities.id"))
    reason: Mapped[str] = mapped_column(Text)
    released_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    released_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Package(db.Model):
    """A sealed package for prosecutors: a ZIP in the evidence store under its own hash."""

    __tablename__ = "evidence_packages"
    __table_args__ = (CheckConstraint(_in("status", PACKAGE_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    number: Mapped[str] = mapped_column(String(48), unique=True)  # <case number>-P01
    title: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default="building")
    progress: Mapped[int] = mapped_column(Integer, default=0)  # percent, while building
    error: Mapped[str | None] = mapped_column(Text)
    bates_prefix: Mapped[str] = mapped_column(String(24))
    bates_first: Mapped[int | None] = mapped_column(Integer)
    bates_last: Mapped[int | None] = mapped_column(Integer)
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    md5: Mapped[str | None] = mapped_column(String(32))
    storage_key: Mapped[str | None] = mapped_column(String(200))
    key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[dict | None] = mapped_column(JSON)  # files, withheld items, redactions
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
    entries: Mapped[list[PackageItem]] = relationship(
        back_populates="package", order_by=lambda: PackageItem.position)
    grants: Mapped[list[PackageGrant]] = relationship(
        back_populates="package", order_by=lambda: PackageGrant.id)


class PackageItem(db.Model):
    """An item selected for a package: included, or withheld (and why)."""

    __tablename__ = "evidence_package_items"
    __table_args__ = (UniqueConstraint("package_id", "item_id", name="package_item_once"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("evidence_packages.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("evidence_items.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    withheld: Mapped[bool] = mapped_column(Boolean, default=False)
    withheld_reason: Mapped[str | None] = mapped_column(Text)

    package: Mapped[Package] = relationship(back_populates="entries")
    item: Mapped[EvidenceItem] = relationship()


class PackageGrant(db.Model):
    """Read-only access for one prosecutor to one package, until `expires_at`."""

    __tablename__ = "evidence_package_grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("evidence_packages.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    package: Mapped[Package] = relationship(back_populates="grants")
    user: Mapped[User] = relationship(foreign_keys=[user_id])
    granted_by: Mapped[User | None] = relationship(foreign_keys=[granted_by_id])


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


# --- integrity alerts, extracted text, suggested entities (storage / sweep / text) --------

class IntegrityAlert(db.Model):
    """The sweep found an item's stored bytes changed or missing: one row per person
    told (the case lead and the lead agency's supervisors), read in the app; the
    email they get says only that there is one."""

    __tablename__ = "evidence_integrity_alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("evidence_items.id", ondelete="CASCADE"),
                                         index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    problem: Mapped[str] = mapped_column(Text)
    expected_sha256: Mapped[str] = mapped_column(String(64))
    actual_sha256: Mapped[str | None] = mapped_column(String(64))
    detected_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    item: Mapped[EvidenceItem] = relationship(foreign_keys=[item_id])
    user: Mapped[User] = relationship(foreign_keys=[user_id])


TEXT_STATUSES = {"pending": "Text extraction waiting", "extracted": "Text extracted",
                 "not_extracted": "Text not extracted"}


class EvidenceText(db.Model):
    """What text extraction made of one item (a PDF): its page count and metadata, or
    why no text was extracted (encrypted, malformed, over the time or memory bound)."""

    __tablename__ = "evidence_texts"
    __table_args__ = (CheckConstraint(_in("status", TEXT_STATUSES), name="status"),)

    item_id: Mapped[int] = mapped_column(ForeignKey("evidence_items.id", ondelete="CASCADE"),
                                         primary_key=True, autoincrement=False)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(Text)
    page_count: Mapped[int | None] = mapped_column(Integer)
    doc_metadata: Mapped[str | None] = mapped_column(Text)  # JSON: title, author, dates...
    extracted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class EvidencePage(db.Model):
    """The text of one page of an item, searchable within its case."""

    __tablename__ = "evidence_pages"
    __table_args__ = (UniqueConstraint("item_id", "page_no", name="item_page"),)

    id: Mapped[int] = mapped_column(_BigKey, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("evidence_items.id", ondelete="CASCADE"),
                                         index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    page_no: Mapped[int] = mapped_column(Integer)  # from 1
    text: Mapped[str] = mapped_column(Text, default="")


SUGGESTION_KINDS = {"phone": "Phone", "email": "Email", "crypto_wallet": "Crypto wallet",
                    "url": "URL", "ad": "Ad id"}
SUGGESTION_STATUSES = {"open": "Waiting for a decision", "accepted": "Added to the case",
                       "dismissed": "Dismissed"}


class EntitySuggestion(db.Model):
    """An identifier found in an item's text, offered as an entity: added to the case
    only when a person accepts it (then `entity_id`), never silently."""

    __tablename__ = "evidence_suggestions"
    __table_args__ = (
        UniqueConstraint("item_id", "kind", "value", name="item_kind_value"),
        CheckConstraint(_in("kind", SUGGESTION_KINDS), name="kind"),
        CheckConstraint(_in("status", SUGGESTION_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("evidence_items.id", ondelete="CASCADE"),
                                         index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(300))  # normalized
    found_as: Mapped[str] = mapped_column(String(300))  # as written in the text
    page_no: Mapped[int] = mapped_column(Integer)
    context: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open")
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    entity_id: Mapped[int | None] = mapped_column(ForeignKey("entities.id", ondelete="SET NULL"))
