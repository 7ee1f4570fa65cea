"""Deconfliction tables: the cross-agency target index, hits and their workflow,
and the in-app notifications behind the live badge.

The index (`target_registrations`, `person_blocks`) never needs an identifier in
the clear when the blind index is on (blind.py): `value_key` and `block_key` are
HMAC tags, `display_hint` stays empty, `sketch` holds only tags.

A hit keeps a snapshot of both sides (agency, case, point of contact, identifier
kind) so it survives the purge of the registrations it came from. Who may read
which part of it is decided by policy.py and schemas.py, never here.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column, relationship

from taskforce.accounts.models import Agency, User, UtcDateTime, utcnow
from taskforce.extensions import db
from taskforce.investigations.models import Case

HIT_KINDS = {
    "exact": "Exact match",
    "possible": "Possible match (person)",
    "second_degree": "Second-degree (one link away)",
    "operation": "Operation (same place, same time)",
}
HIT_STATUSES = {
    "new": "New",
    "acknowledged": "Acknowledged",
    "coordinating": "Coordinating",
    "resolved": "Resolved",
}
RESOLUTIONS = {
    "same_target": "Same target",
    "joint_investigation": "Joint investigation",
    "different_target": "Different target",
    "referred": "Referred",
    "no_action": "No action",
}
HIT_ACTIONS = ("created", "acknowledged", "coordinating", "resolved")
NOTIFICATION_KINDS = {
    "hit.new": "New deconfliction hit",
}
OPERATION_KINDS = {
    "search_warrant": "Search warrant",
    "buy_bust": "Buy-bust",
    "surveillance": "Surveillance",
    "undercover_meeting": "Undercover meeting",
    "rescue_recovery": "Rescue / recovery",
}


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class TargetRegistration(db.Model):
    """One identifier of one case in the cross-agency index, until it expires."""

    __tablename__ = "target_registrations"
    __table_args__ = (
        # The exact check's seek, and one row per case and identifier, on narrow keys:
        # (8-byte key64, case, slot) entries make an index a quarter the size of one
        # of (kind, value_key, case, scheme), and its upkeep is most of a bulk load's
        # time (bench/bench_target_check.py). Every lookup compares the full
        # (kind, value_key, scheme) after the seek, so values that share a key64
        # never meet; in one case they take slots 0, 1, ... (bulk.py keeps them
        # dense, so a new value's slot-0 insert always collides with any of them).
        UniqueConstraint("key64", "case_id", "key_slot", name="case_identifier"),
        # The rows at slot 1+ (next to none: a 64-bit collision inside one case),
        # for the purge to renumber; empty, so it costs a load nothing.
        Index("ix_target_registrations_key_collisions", "key64", "case_id",
              postgresql_where=text("key_slot > 0"), sqlite_where=text("key_slot > 0")),
        # Only the purge asks for expired rows: on PostgreSQL a BRIN index (a summary
        # per block range; expiry follows the order rows are written, give or take
        # renewals), nearly free to keep where a btree cost ~10% of a bulk load.
        Index("ix_target_registrations_expires_at", "expires_at", postgresql_using="brin"),
        # Rows with an entity only (a lookup by entity never asks for NULL): a load of
        # identifiers without entities pays nothing for it.
        Index("ix_target_registrations_entity_id", "entity_id",
              postgresql_where=text("entity_id IS NOT NULL"),
              sqlite_where=text("entity_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    # The normalized value, or its HMAC tag when the blind index is on (blind.py).
    value_key: Mapped[str] = mapped_column(String(512))
    # The first 8 bytes of the value key's hash (blind.key64): what the index seeks.
    key64: Mapped[int] = mapped_column(BigInteger)
    # 0; 1, 2, ... for other values of the same case that share this key64
    key_slot: Mapped[int] = mapped_column(SmallInteger, default=0)
    scheme: Mapped[str] = mapped_column(String(24))  # "plain" or "hmac1:<fingerprint>"
    # The identifier as entered, for its own case's pages; NULL when blind.
    display_hint: Mapped[str | None] = mapped_column(String(512))
    # Persons only, blind only: tags to score possible matches with (matching.py).
    sketch: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The case's agency when registered (a snapshot, as a hit's sides are), written
    # from the case by the service. No foreign key: PostgreSQL checks one per row
    # loaded (~4 us of ~20 per row of a bulk load, bench_target_check.py), and the
    # case's own key to its agency already holds; agencies are never deleted. No
    # index either: no query looks registrations up by agency.
    agency_id: Mapped[int] = mapped_column(Integer)
    # No foreign key either (on PostgreSQL each row loaded paid ~3.5 us for its check,
    # of ~20): the service writes only cases it has loaded, and the trigger below
    # deletes a deleted case's registrations, as the key's ON DELETE CASCADE did.
    case_id: Mapped[int] = mapped_column(index=True)
    entity_id: Mapped[int | None] = mapped_column(
        ForeignKey("entities.id", ondelete="SET NULL"))
    poc_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    poc_name: Mapped[str] = mapped_column(String(200))
    poc_phone: Mapped[str] = mapped_column(String(40), default="")
    poc_email: Mapped[str] = mapped_column(String(254), default="")
    registered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    renewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)

    agency: Mapped[Agency] = relationship(
        primaryjoin="TargetRegistration.agency_id == Agency.id",
        foreign_keys="TargetRegistration.agency_id", lazy="joined", innerjoin=True)
    blocks: Mapped[list[PersonBlock]] = relationship(
        back_populates="registration", cascade="all, delete-orphan", passive_deletes=True)

    def live_at(self, now: datetime) -> bool:
        return self.expires_at > now

    def __repr__(self) -> str:
        return f"<TargetRegistration {self.id} {self.kind} case={self.case_id}>"


# A deleted case takes its registrations along (what case_id's foreign key did with
# ON DELETE CASCADE): on PostgreSQL one statement-level trigger on cases, which costs
# a bulk load nothing; on SQLite a row trigger. The migration installs the same.
_CASE_DELETED = {
    "postgresql": ("""
CREATE OR REPLACE FUNCTION deconfliction_case_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM target_registrations r USING gone_cases g WHERE r.case_id = g.id;
    RETURN NULL;
END $$""", "DROP TRIGGER IF EXISTS deconfliction_case_deleted ON cases", """
CREATE TRIGGER deconfliction_case_deleted AFTER DELETE ON cases
REFERENCING OLD TABLE AS gone_cases FOR EACH STATEMENT
EXECUTE FUNCTION deconfliction_case_deleted()"""),
    # SQLite enforces no foreign key here (no PRAGMA foreign_keys): blocks go too
    "sqlite": ("""
CREATE TRIGGER IF NOT EXISTS deconfliction_case_deleted AFTER DELETE ON cases
BEGIN
    DELETE FROM person_blocks WHERE registration_id IN
        (SELECT id FROM target_registrations WHERE case_id = OLD.id);
    DELETE FROM target_registrations WHERE case_id = OLD.id;
END""",),
}


def install_case_deleted_trigger(connection: Connection) -> None:
    """Idempotent; after create_all and from the migration."""
    for statement in _CASE_DELETED.get(connection.dialect.name, ()):
        connection.exec_driver_sql(statement)


@event.listens_for(TargetRegistration.__table__, "after_create")
def _case_deleted_after_create(target, connection: Connection, **kw) -> None:
    install_case_deleted_trigger(connection)


class PersonBlock(db.Model):
    """A blocking key of a registered person (identifiers.person_blocking_keys),
    HMAC-tagged when blind: near names with the same birth year share one."""

    __tablename__ = "person_blocks"
    __table_args__ = (
        UniqueConstraint("registration_id", "block_key", name="registration_block"),
        Index("ix_person_blocks_block_key", "block_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    registration_id: Mapped[int] = mapped_column(
        ForeignKey("target_registrations.id", ondelete="CASCADE"))
    block_key: Mapped[str] = mapped_column(String(128))

    registration: Mapped[TargetRegistration] = relationship(back_populates="blocks")


class HitNumberSequence(db.Model):
    """The last deconfliction number handed out in a year (DC-2026-000123)."""

    __tablename__ = "hit_number_sequences"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_value: Mapped[int] = mapped_column(Integer, default=0)


class Hit(db.Model):
    """Two registrations that conflict, seen from both sides, and its workflow.

    Side "a" is the registration that found the conflict (the newer one), side "b"
    the one it found. Each side is a snapshot, so a purged registration leaves the
    hit readable.
    """

    __tablename__ = "hits"
    __table_args__ = (
        CheckConstraint(_in("kind", HIT_KINDS), name="kind"),
        CheckConstraint(_in("status", HIT_STATUSES), name="status"),
        CheckConstraint(_in("resolution", RESOLUTIONS) + " OR resolution IS NULL",
                        name="resolution"),
        CheckConstraint("score >= 0 AND score <= 1", name="score"),
        Index("ix_hits_a_case", "a_case_id"),
        Index("ix_hits_b_case", "b_case_id"),
        Index("ix_hits_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    # "<low registration id>:<high registration id>": one hit per pair, ever
    pair_key: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="new")
    resolution: Mapped[str | None] = mapped_column(String(24))
    resolution_note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    a_registration_id: Mapped[int | None] = mapped_column(
        ForeignKey("target_registrations.id", ondelete="SET NULL"))
    a_agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"))
    a_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    a_identifier_kind: Mapped[str] = mapped_column(String(32))
    a_poc_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    a_poc_name: Mapped[str] = mapped_column(String(200))
    a_poc_phone: Mapped[str] = mapped_column(String(40), default="")
    a_poc_email: Mapped[str] = mapped_column(String(254), default="")
    a_acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Operation hits (kind "operation"): the operation, its kind and its time window;
    # a_case_id is then the operation's case, if it has one.
    a_operation_id: Mapped[int | None] = mapped_column(
        ForeignKey("operations.id", ondelete="SET NULL"), index=True)
    a_operation_kind: Mapped[str | None] = mapped_column(String(32))
    a_starts_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    a_ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    b_registration_id: Mapped[int | None] = mapped_column(
        ForeignKey("target_registrations.id", ondelete="SET NULL"))
    b_agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"))
    b_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    b_identifier_kind: Mapped[str] = mapped_column(String(32))
    b_poc_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    b_poc_name: Mapped[str] = mapped_column(String(200))
    b_poc_phone: Mapped[str] = mapped_column(String(40), default="")
    b_poc_email: Mapped[str] = mapped_column(String(254), default="")
    b_acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    b_operation_id: Mapped[int | None] = mapped_column(
        ForeignKey("operations.id", ondelete="SET NULL"), index=True)
    b_operation_kind: Mapped[str | None] = mapped_column(String(32))
    b_starts_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    b_ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    a_agency: Mapped[Agency] = relationship(foreign_keys=[a_agency_id], lazy="joined")
    b_agency: Mapped[Agency] = relationship(foreign_keys=[b_agency_id], lazy="joined")
    # For the access check only (policy.py); never serialized for the other side.
    a_case: Mapped[Case | None] = relationship(foreign_keys=[a_case_id])
    b_case: Mapped[Case | None] = relationship(foreign_keys=[b_case_id])
    a_operation: Mapped[Operation | None] = relationship(foreign_keys=[a_operation_id])
    b_operation: Mapped[Operation | None] = relationship(foreign_keys=[b_operation_id])
    events: Mapped[list[HitEvent]] = relationship(
        back_populates="hit", order_by=lambda: (HitEvent.at, HitEvent.id),
        cascade="all, delete-orphan", passive_deletes=True)

    def side(self, name: str) -> dict[str, Any]:
        """One side's snapshot as plain values (name is "a" or "b")."""
        return {key: getattr(self, f"{name}_{key}") for key in (
            "registration_id", "agency_id", "case_id", "identifier_kind", "poc_user_id",
            "poc_name", "poc_phone", "poc_email", "acknowledged_at", "operation_id",
            "operation_kind", "starts_at", "ends_at")} | {
            "agency": getattr(self, f"{name}_agency")}

    def __repr__(self) -> str:
        return f"<Hit {self.number} {self.kind} {self.status}>"


class HitEvent(db.Model):
    """Who did what to a hit, and when (also in the audit trail)."""

    __tablename__ = "hit_events"
    __table_args__ = (CheckConstraint(_in("action", HIT_ACTIONS), name="action"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hit_id: Mapped[int] = mapped_column(ForeignKey("hits.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    agency_id: Mapped[int | None] = mapped_column(ForeignKey("agencies.id"))
    action: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")

    hit: Mapped[Hit] = relationship(back_populates="events")
    user: Mapped[User | None] = relationship(lazy="joined")
    agency: Mapped[Agency | None] = relationship(lazy="joined")


class Notification(db.Model):
    """Something a user should look at: behind the live badge in the nav.

    `kind` says what it is about; `hit_id` names the hit (survivor alerts, a later
    step, will add their own reference column beside it).
    """

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(_in("kind", NOTIFICATION_KINDS), name="kind"),
        Index("ix_notifications_user_unread", "user_id", "read_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    hit_id: Mapped[int | None] = mapped_column(ForeignKey("hits.id", ondelete="CASCADE"),
                                               index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    hit: Mapped[Hit | None] = relationship(lazy="joined")


# --------------------------------------------------------------------------- operations

class Operation(db.Model):
    """A planned operation (event deconfliction): where, how wide, when, by whom.

    The place is coordinates (WGS 84) and a radius; `address` is the text the
    agency gave with them, for its own people only. Conflicts are found through
    `operation_cells` (the H3 cells its disc touches), never by a scan. An
    operation stops hitting at `ends_at` (or when cancelled): its cells are
    deleted then, the row itself later (service.purge_operations).
    """

    __tablename__ = "operations"
    __table_args__ = (
        CheckConstraint(_in("kind", OPERATION_KINDS), name="kind"),
        CheckConstraint("ends_at > starts_at", name="window"),
        CheckConstraint("radius_m > 0", name="radius"),
        CheckConstraint("latitude BETWEEN -90 AND 90 AND longitude BETWEEN -180 AND 180",
                        name="coordinates"),
        Index("ix_operations_agency_starts", "agency_id", "starts_at"),
        Index("ix_operations_starts_at", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200), default="")
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), index=True)
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    radius_m: Mapped[int] = mapped_column(Integer)
    address: Mapped[str] = mapped_column(String(500), default="")
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    undercover: Mapped[bool] = mapped_column(Boolean, default=False)
    poc_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    poc_name: Mapped[str] = mapped_column(String(200))
    poc_phone: Mapped[str] = mapped_column(String(40), default="")
    poc_email: Mapped[str] = mapped_column(String(254), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # how many hits it made when submitted (the dashboard's hit rate)
    hit_count: Mapped[int] = mapped_column(Integer, default=0)

    agency: Mapped[Agency] = relationship(lazy="joined")
    case: Mapped[Case | None] = relationship()
    cells: Mapped[list[OperationCell]] = relationship(
        back_populates="operation", cascade="all, delete-orphan", passive_deletes=True)

    def live_at(self, now: datetime) -> bool:
        return self.cancelled_at is None and self.ends_at > now

    def __repr__(self) -> str:
        return f"<Operation {self.id} {self.kind} agency={self.agency_id}>"


class OperationCell(db.Model):
    """One H3 cell (deconfliction.geo.RESOLUTION) that an operation's disc touches,
    on one UTC day its window touches (geo.days_touched).

    The lookup is `cell IN (the new disc's cells) AND day IN (the new window's
    days)`: one seek per (cell, day) on a covering index. The window and agency
    are copied here so the seek needs no join; the exact distance is checked on
    the few candidates afterwards.
    """

    __tablename__ = "operation_cells"
    __table_args__ = (
        Index("ix_operation_cells_cell_day", "cell", "day", "ends_at", "starts_at",
              "agency_id", "operation_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    operation_id: Mapped[int] = mapped_column(
        ForeignKey("operations.id", ondelete="CASCADE"), index=True)
    cell: Mapped[int] = mapped_column(BigInteger)
    day: Mapped[int] = mapped_column(Integer)  # UTC days since 1970-01-01
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
    agency_id: Mapped[int] = mapped_column(Integer)

    operation: Mapped[Operation] = relationship(back_populates="cells")
