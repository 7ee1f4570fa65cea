"""Graph tables: entities, their identifiers, their place in cases, typed links, and
the outbox that feeds the Neo4j projection.

The relational database is the system of record (DESIGN.md, "Where the truth
lives"): Neo4j holds a projection of these rows, fed by `GraphOutbox`, which the
service writes in the same transaction as the change it describes.

Nothing here decides anything: validation is in service.py, access in policy.py.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from taskforce.accounts.models import User, UtcDateTime, utcnow
from taskforce.extensions import db
from taskforce.graph.identifiers import InvalidIdentifier, minor_on

# Vocabularies: value -> label shown in pages. The API speaks the values.
ENTITY_KINDS = {
    "person": "Person",
    "location": "Location",
    "phone": "Phone",
    "email": "Email",
    "bank_account": "Bank account",
    "crypto_wallet": "Crypto wallet",
    "online_account": "Online account",
    "ad": "Online ad",
    "vehicle": "Vehicle",
    "organization": "Organization / business",
}
# Which identifier kinds (identifiers.KINDS) an entity of each kind may carry. The
# sets do not overlap, so an identifier names at most one kind of entity.
IDENTIFIER_KINDS_BY_ENTITY = {
    "person": ("person",),
    "location": ("address",),
    "phone": ("phone",),
    "email": ("email",),
    "bank_account": ("bank_account",),
    "crypto_wallet": ("crypto_wallet",),
    "online_account": ("online_account",),
    "ad": ("ad", "url"),
    "vehicle": ("vehicle_plate", "vin"),
    "organization": (),
}
PERSON_ROLES = {
    "suspect": "Suspect",
    "victim": "Victim / survivor",
    "witness": "Witness",
    "associate": "Associate",
    "buyer": "Buyer",
}
SURVIVOR_ROLE = "victim"
LOCATION_KINDS = {
    "residence": "Residence",
    "hotel_motel": "Hotel / motel",
    "massage_business": "Massage business",
    "stash_house": "Stash house",
    "work_site": "Work site",
    "other": "Other",
}
SEXES = {"female": "Female", "male": "Male", "other": "Other", "unknown": "Unknown"}
LINK_TYPES = {
    "CALLED": "called",
    "TEXTED": "texted",
    "PAID": "paid",
    "OWNS": "owns",
    "USES": "uses",
    "LIVES_AT": "lives at",
    "STAYED_AT": "stayed at",
    "WORKS_AT": "works at",
    "RECRUITED": "recruited",
    "CONTROLS": "controls",
    "ADVERTISED": "advertised",
    "ASSOCIATED_WITH": "associated with",
}
PROVENANCE_KINDS = {
    "evidence": "Evidence item",
    "import": "Import",
    "note": "Case note",
    "manual": "Entered by hand",
}
OUTBOX_OPS = ("upsert_entity", "upsert_link", "delete_entity", "delete_link")


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Entity(db.Model):
    """A person, place, phone, account, vehicle, ad or business: one row however many
    cases it is in (its identifiers make it the same thing)."""

    __tablename__ = "entities"
    __table_args__ = (CheckConstraint(_in("kind", ENTITY_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    label: Mapped[str] = mapped_column(String(200))
    # Kind-specific details (person: names, aliases, dob, sex; location: address, lat,
    # lon, location_kind; ...), validated by the service.
    props: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Set once a person is a victim/survivor in any case; never cleared, never reused.
    pseudonym: Mapped[str | None] = mapped_column(String(32), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    created_by: Mapped[User | None] = relationship()
    identifiers: Mapped[list[Identifier]] = relationship(
        back_populates="entity", order_by=lambda: Identifier.id, lazy="selectin")
    case_links: Mapped[list[CaseEntity]] = relationship(
        back_populates="entity", order_by=lambda: CaseEntity.id, lazy="selectin")

    @property
    def is_survivor(self) -> bool:
        return self.pseudonym is not None

    @property
    def dob(self) -> date | None:
        raw = (self.props or {}).get("dob")
        if not raw:
            return None
        try:
            return date.fromisoformat(str(raw))
        except ValueError:
            return None

    def minor_on(self, day: date) -> bool:
        """Under 18 on `day`, by the date of birth (False when it is not known)."""
        dob = self.dob
        if dob is None or day < dob:
            return False
        try:
            return minor_on(dob, day)
        except InvalidIdentifier:
            return False

    @property
    def minor(self) -> bool:
        return self.minor_on(date.today())

    @property
    def case_ids(self) -> list[int]:
        return sorted({ce.case_id for ce in self.case_links})

    def __repr__(self) -> str:
        return f"<Entity {self.id} {self.kind}>"


class Identifier(db.Model):
    """A normalized identifier (identifiers.normalize): the same (kind, value) is one entity."""

    __tablename__ = "identifiers"
    __table_args__ = (UniqueConstraint("kind", "value", name="kind_value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"),
                                           index=True)
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(512))
    display: Mapped[str] = mapped_column(String(512), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    entity: Mapped[Entity] = relationship(back_populates="identifiers")


class CaseEntity(db.Model):
    """An entity in a case, with the person's role in that case."""

    __tablename__ = "case_entities"
    __table_args__ = (
        UniqueConstraint("case_id", "entity_id", name="case_entity"),
        CheckConstraint(_in("role", PERSON_ROLES) + " OR role IS NULL", name="role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"),
                                           index=True)
    role: Mapped[str | None] = mapped_column(String(16))
    added_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    added_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    entity: Mapped[Entity] = relationship(back_populates="case_links", lazy="joined")
    added_by: Mapped[User | None] = relationship()


class Link(db.Model):
    """A typed, dated link between two entities of a case, with where it came from.

    One row per (case, source, target, type, provenance): the same source restating
    the same link is merged into this row, never a second one.
    """

    __tablename__ = "links"
    __table_args__ = (
        UniqueConstraint("case_id", "source_id", "target_id", "type", "provenance_kind",
                         "provenance_ref", name="statement"),
        CheckConstraint(_in("type", LINK_TYPES), name="type"),
        CheckConstraint(_in("provenance_kind", PROVENANCE_KINDS), name="provenance_kind"),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence"),
        CheckConstraint("count >= 1", name="count"),
        CheckConstraint("source_id <> target_id", name="not_self"),
        Index("ix_links_source_target", "source_id", "target_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"))
    target_id: Mapped[int] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"),
                                           index=True)
    type: Mapped[str] = mapped_column(String(32))
    # Provenance: the evidence item, import or note it came from ("" when entered by hand).
    provenance_kind: Mapped[str] = mapped_column(String(16))
    provenance_ref: Mapped[str] = mapped_column(String(64), default="")
    entered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    confidence: Mapped[float] = mapped_column(Float, default=1.0)
    first_seen: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime)
    count: Mapped[int] = mapped_column(Integer, default=1)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    source: Mapped[Entity] = relationship(foreign_keys=[source_id], lazy="joined")
    target: Mapped[Entity] = relationship(foreign_keys=[target_id], lazy="joined")
    entered_by: Mapped[User | None] = relationship()


class GraphOutbox(db.Model):
    """One change the Neo4j projection has yet to hear about.

    Written by the service in the change's own transaction; drained by
    tasks.drain_outbox, which projects the object's *current* state (or deletes it
    when the row is gone), so replaying any row is harmless.
    """

    __tablename__ = "graph_outbox"
    __table_args__ = (
        CheckConstraint(_in("op", OUTBOX_OPS), name="op"),
        # the drain's query: unprocessed rows in id order
        Index("ix_graph_outbox_pending", "id", sqlite_where=text("processed_at IS NULL"),
              postgresql_where=text("processed_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    op: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
