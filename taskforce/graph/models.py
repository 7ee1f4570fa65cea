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
# Links through which a survivor's phones, accounts, emails, vehicles... take on the
# survivor's protection: the survivor USES or OWNS them (either direction).
SHIELDING_LINK_TYPES = ("USES", "OWNS")
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
    cases it is in (its identifiers make it the same thing).

    Need to know: the entity itself only anchors identifiers. What a case says about
    it (its label, details such as names, date of birth and notes, a person's role)
    lives on that case's `CaseEntity`, so a member of another case that shares only
    the phone number never sees what this case wrote about it.
    """

    __tablename__ = "entities"
    __table_args__ = (CheckConstraint(_in("kind", ENTITY_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    # Set once a person is a victim/survivor in any case; never cleared, never reused.
    pseudonym: Mapped[str | None] = mapped_column(String(32), unique=True)
    # Set while this entity is merged into another (EntityMerge): it then has no
    # identifiers, case memberships or links, and is shown nowhere.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("entities.id"), index=True)
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
    def case_ids(self) -> list[int]:
        return sorted({ce.case_id for ce in self.case_links})

    def in_case(self, case_id: int) -> CaseEntity | None:
        return next((ce for ce in self.case_links if ce.case_id == case_id), None)

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
    """An entity in a case, and what that case says about it: its label, details
    (names, aliases, date of birth, notes, ...), the person's role, and which of the
    entity's identifiers this case entered. Shown only to readers of this case."""

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
    label: Mapped[str] = mapped_column(String(200), default="")
    # Kind-specific details, validated by the service.
    props: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The identifiers this case entered, as ["kind", "value"] pairs (normalized): a
    # reader of this case sees these, not the ones other cases attached.
    identifier_keys: Mapped[list[list[str]]] = mapped_column(JSON, default=list)
    added_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    added_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    entity: Mapped[Entity] = relationship(back_populates="case_links", lazy="joined")
    added_by: Mapped[User | None] = relationship()

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
        """Under 18 on `day` by this case's date of birth (False when it is not known).
        Derived when read, never stored, so it does not go stale on a birthday."""
        dob = self.dob
        if dob is None or day < dob:
            return False
        try:
            return minor_on(dob, day)
        except InvalidIdentifier:
            return False


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


class EntityMerge(db.Model):
    """Two entities found to be the same thing, merged: `absorbed` moved into `kept`.

    `before` holds every row the merge changed, as it was (the absorbed entity's
    identifiers, both entities' case memberships, the links it re-pointed or folded
    away, both pseudonyms), so an unmerge restores both entities exactly.
    """

    __tablename__ = "entity_merges"

    id: Mapped[int] = mapped_column(primary_key=True)
    kept_id: Mapped[int] = mapped_column(ForeignKey("entities.id"), index=True)
    absorbed_id: Mapped[int] = mapped_column(ForeignKey("entities.id"), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(String(500), default="")
    before: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    merged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    merged_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    undone_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    undone_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


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


# --- Imports of call detail records, bank records and generic CSV (imports.py) ----------

from sqlalchemy import BigInteger  # this block's own import, kept with it

IMPORT_KINDS = {
    "cdr": "Call detail records",
    "bank": "Bank records",
    "generic": "Generic CSV (column mapping)",
}
IMPORT_STATUSES = {"queued": "Queued", "running": "Running", "done": "Done", "failed": "Failed"}
_ImportBytes = BigInteger().with_variant(Integer, "sqlite")  # files past 2 GiB


class ImportRun(db.Model):
    """One CSV file imported into a case: the evidence item that holds its bytes, what
    became of its rows, and where the run stands (the page polls it).

    One run per (case, SHA-256): the same file imported again is this run, never a
    second one. Every link the run makes names it as provenance (`provenance_ref`).
    """

    __tablename__ = "import_runs"
    __table_args__ = (
        UniqueConstraint("case_id", "sha256", name="uq_import_runs_case_file"),
        CheckConstraint(_in("kind", IMPORT_KINDS), name="kind"),
        CheckConstraint(_in("status", IMPORT_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(_ImportBytes, default=0)
    filename: Mapped[str | None] = mapped_column(String(255))
    evidence_item_id: Mapped[int | None] = mapped_column(ForeignKey("evidence_items.id"))
    mapping_id: Mapped[int | None] = mapped_column(ForeignKey("column_mappings.id",
                                                              ondelete="SET NULL"))
    # kind-specific choices made at upload (bank: the statement's own account; generic:
    # the mapping as it was then, so editing the mapping later changes no past import)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    rows_loaded: Mapped[int] = mapped_column(Integer, default=0)
    rows_bad: Mapped[int] = mapped_column(Integer, default=0)
    rows_skipped: Mapped[int] = mapped_column(Integer, default=0)
    bytes_read: Mapped[int] = mapped_column(_ImportBytes, default=0)
    # [{"line": n, "reason": "..."}], the first BAD_ROWS_KEPT of them
    bad_rows: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    entities_created: Mapped[int] = mapped_column(Integer, default=0)
    entities_attached: Mapped[int] = mapped_column(Integer, default=0)
    links_created: Mapped[int] = mapped_column(Integer, default=0)
    links_merged: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])

    @property
    def provenance_ref(self) -> str:
        return f"import-{self.id}"


class ColumnMapping(db.Model):
    """A remembered generic-CSV mapping: which columns hold the two ends of each link,
    their identifier kinds, the link type, and the date and amount columns.

    Kept for its owner, or shared with the owner's agency (`agency_id` set)."""

    __tablename__ = "column_mappings"
    __table_args__ = (
        CheckConstraint(_in("link_type", LINK_TYPES), name="link_type"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    agency_id: Mapped[int | None] = mapped_column(ForeignKey("agencies.id"), index=True)
    source_column: Mapped[str] = mapped_column(String(120))
    source_kind: Mapped[str] = mapped_column(String(32))
    target_column: Mapped[str] = mapped_column(String(120))
    target_kind: Mapped[str] = mapped_column(String(32))
    link_type: Mapped[str] = mapped_column(String(32))
    date_column: Mapped[str | None] = mapped_column(String(120))
    amount_column: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    owner: Mapped[User] = relationship(foreign_keys=[owner_id])

    def as_options(self) -> dict[str, Any]:
        return {"mapping_id": self.id, "mapping_name": self.name,
                "source_column": self.source_column, "source_kind": self.source_kind,
                "target_column": self.target_column, "target_kind": self.target_kind,
                "link_type": self.link_type, "date_column": self.date_column,
                "amount_column": self.amount_column}
