"""Investigations tables: cases, their team and partner agencies, status history,
leads, tasks, notes, and the per-agency, per-year case-number sequence.

Nothing here decides anything: the rules are in policy.py and service.py.
History is kept, not overwritten: a member leaves by `removed_at`, a partner
grant ends by `revoked_at`, a status change is a row of its own.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.ext.associationproxy import AssociationProxy, association_proxy
from sqlalchemy.orm import Mapped, mapped_column, relationship

from taskforce.accounts.models import Agency, User, UtcDateTime, utcnow
from taskforce.extensions import db

# Vocabularies: value -> label shown in pages. The API speaks the values.
OFFENCES = {
    "sex_trafficking": "Sex trafficking",
    "labor_trafficking": "Labor trafficking",
    "child_sexual_exploitation": "Child sexual exploitation",
    "related_offence": "Related offence",
}
CASE_STATUSES = {
    "open": "Open",
    "active": "Active",
    "suspended": "Suspended",
    "referred_for_prosecution": "Referred for prosecution",
    "closed": "Closed",
}
CASE_ROLES = {
    "lead": "Lead",
    "investigator": "Investigator",
    "analyst": "Analyst",
    "prosecutor": "Prosecutor",
    "victim_specialist": "Victim specialist",
}
PARTNER_ACCESS = {
    "read": "Read",
    "contribute": "Contribute",
}
LEAD_SOURCES = {
    "tip_line": "Tip line",
    "hotline_referral": "Hotline referral",
    "ncmec_cybertip": "NCMEC CyberTipline report",
    "patrol": "Patrol",
    "partner_agency": "Partner agency",
}
LEAD_STATUSES = {
    "new": "New",
    "assigned": "Assigned",
    "worked": "Worked",
    "closed": "Closed",
}
LEAD_OUTCOMES = {
    "substantiated": "Substantiated",
    "unsubstantiated": "Unsubstantiated",
    "referred": "Referred elsewhere",
    "duplicate": "Duplicate",
    "insufficient_information": "Insufficient information",
}


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class CaseNumberSequence(db.Model):
    """The last case sequence handed out for one agency in one year.

    Allocated by an atomic upsert (service._next_sequence), so two cases
    opened at the same moment never share a number.
    """

    __tablename__ = "case_number_sequences"

    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_value: Mapped[int] = mapped_column(Integer, default=0)


class Case(db.Model):
    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("agency_id", "year", "sequence", name="agency_year_sequence"),
        CheckConstraint(_in("status", CASE_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)  # lead agency
    year: Mapped[int] = mapped_column(Integer)
    sequence: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(32), default="open", index=True)
    lead_investigator_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    opened_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    agency: Mapped[Agency] = relationship(lazy="joined")
    lead_investigator: Mapped[User] = relationship(foreign_keys=[lead_investigator_id])
    opened_by: Mapped[User] = relationship(foreign_keys=[opened_by_id])
    offence_rows: Mapped[list[CaseOffence]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="CaseOffence.offence")
    offences: AssociationProxy[list[str]] = association_proxy(
        "offence_rows", "offence", creator=lambda value: CaseOffence(offence=value))
    members: Mapped[list[CaseMember]] = relationship(
        back_populates="case", order_by=lambda: (CaseMember.added_at, CaseMember.id))
    partner_grants: Mapped[list[PartnerGrant]] = relationship(
        back_populates="case", order_by=lambda: (PartnerGrant.granted_at, PartnerGrant.id))
    status_changes: Mapped[list[CaseStatusChange]] = relationship(
        back_populates="case", order_by=lambda: (CaseStatusChange.changed_at, CaseStatusChange.id))

    @property
    def active_members(self) -> list[CaseMember]:
        return [m for m in self.members if m.removed_at is None]

    @property
    def active_grants(self) -> list[PartnerGrant]:
        return [g for g in self.partner_grants if g.revoked_at is None]

    def __repr__(self) -> str:
        return f"<Case {self.number}>"


class CaseOffence(db.Model):
    __tablename__ = "case_offences"
    __table_args__ = (CheckConstraint(_in("offence", OFFENCES), name="offence"),)

    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    offence: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)


class CaseMember(db.Model):
    """A user on a case's team. Leaving sets removed_at; the row stays as history."""

    __tablename__ = "case_members"
    __table_args__ = (
        CheckConstraint(_in("case_role", CASE_ROLES), name="case_role"),
        Index("ix_case_members_user_active", "user_id", "removed_at"),
        # one active membership per user and case (a race to add twice fails here)
        Index("uq_case_members_active", "case_id", "user_id", unique=True,
              sqlite_where=text("removed_at IS NULL"),
              postgresql_where=text("removed_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    case_role: Mapped[str] = mapped_column(String(32))
    added_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    added_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    removed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    removed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    case: Mapped[Case] = relationship(back_populates="members")
    user: Mapped[User] = relationship(foreign_keys=[user_id], lazy="joined")
    added_by: Mapped[User] = relationship(foreign_keys=[added_by_id])
    removed_by: Mapped[User | None] = relationship(foreign_keys=[removed_by_id])


class PartnerGrant(db.Model):
    """Another agency's access to a case. Revoking sets revoked_at; the row stays."""

    __tablename__ = "partner_grants"
    __table_args__ = (
        CheckConstraint(_in("access", PARTNER_ACCESS), name="access"),
        Index("ix_partner_grants_agency_active", "agency_id", "revoked_at"),
        # one active grant per agency and case
        Index("uq_partner_grants_active", "case_id", "agency_id", unique=True,
              sqlite_where=text("revoked_at IS NULL"),
              postgresql_where=text("revoked_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"))
    access: Mapped[str] = mapped_column(String(16))
    granted_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    case: Mapped[Case] = relationship(back_populates="partner_grants")
    agency: Mapped[Agency] = relationship(lazy="joined")
    granted_by: Mapped[User] = relationship(foreign_keys=[granted_by_id])
    revoked_by: Mapped[User | None] = relationship(foreign_keys=[revoked_by_id])


class CaseStatusChange(db.Model):
    """One step of a case's status history: who, when, from, to, why."""

    __tablename__ = "case_status_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(32))  # None: the case was opened
    to_status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    changed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    case: Mapped[Case] = relationship(back_populates="status_changes")
    changed_by: Mapped[User] = relationship()


class Lead(db.Model):
    __tablename__ = "leads"
    __table_args__ = (
        CheckConstraint(_in("source", LEAD_SOURCES), name="source"),
        CheckConstraint(_in("status", LEAD_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    details: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(32))
    # e.g. the CyberTipline report number or the hotline's referral id
    source_reference: Mapped[str] = mapped_column(String(100), default="")
    received_on: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="new")
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    outcome: Mapped[str | None] = mapped_column(String(32))
    outcome_notes: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    assigned_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    worked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    assignee: Mapped[User | None] = relationship(foreign_keys=[assignee_id], lazy="joined")
    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id])
    closed_by: Mapped[User | None] = relationship(foreign_keys=[closed_by_id])


class Task(db.Model):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    due_on: Mapped[date | None] = mapped_column(Date)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    done_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    assignee: Mapped[User | None] = relationship(foreign_keys=[assignee_id], lazy="joined")
    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id])
    done_by: Mapped[User | None] = relationship(foreign_keys=[done_by_id])

    @property
    def done(self) -> bool:
        return self.done_at is not None


class Note(db.Model):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    event_on: Mapped[date | None] = mapped_column(Date)  # when what the note tells happened
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    author: Mapped[User] = relationship(lazy="joined")
