"""Survivor and minor alerts: one row per alerted agency and per fact seen, and the
follow-up its victim specialists record on it; and the outbox of the checks owed
(AlertCheck), written in the transaction of the links that call for them.

Nothing here decides anything: what raises an alert is in service.py, who sees
it (and whether the survivor's name or only the pseudonym) in policy.py.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from taskforce.accounts.models import Agency, User, UtcDateTime, utcnow
from taskforce.extensions import db

# Why a survivor (or a minor) came to the specialists' attention. The API speaks the values.
ALERT_REASONS = {
    "in_case": "Linked to a case",
    "link": "Linked in a case",
    "one_link": "One link from a case entity",
    "other_agency": "Also in another agency's case",
}
ALERT_STATUSES = {"new": "New", "acknowledged": "Acknowledged"}
FOLLOW_UP_ACTIONS = {
    "contacted": "Survivor contacted",
    "services_offered": "Services offered",
    "referred": "Referred",
    "note": "Note",
}


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class SurvivorAlert(db.Model):
    """A survivor or minor seen somewhere new, told to one agency's victim specialists.

    `key` (survivor, case, reason, link, agency) is unique: the same fact is never
    alerted twice, however often or by however many workers it is evaluated.
    `case_id` is the case the alerted agency has standing in; `contact_case_id` the
    case whose lead is the point of contact shown (the same case, or for a fact that
    spans two cases, the other one: only its lead is shown, never its contents).
    """

    __tablename__ = "survivor_alerts"
    __table_args__ = (
        CheckConstraint(_in("reason", ALERT_REASONS), name="reason"),
        CheckConstraint(_in("status", ALERT_STATUSES), name="status"),
        Index("ix_survivor_alerts_agency_status", "agency_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"))
    entity_id: Mapped[int] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"),
                                           index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    contact_case_id: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(String(16))
    role: Mapped[str | None] = mapped_column(String(16))  # the person's role, for in_case
    link_type: Mapped[str | None] = mapped_column(String(32))
    link_id: Mapped[int | None] = mapped_column(Integer)  # no FK: the alert outlives the link
    survivor: Mapped[bool] = mapped_column(Boolean, default=False)
    minor: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="new")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    emailed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    agency: Mapped[Agency] = relationship(lazy="joined")
    acknowledged_by: Mapped[User | None] = relationship(foreign_keys=[acknowledged_by_id])
    follow_ups: Mapped[list[AlertFollowUp]] = relationship(
        back_populates="alert", order_by=lambda: (AlertFollowUp.at, AlertFollowUp.id),
        cascade="all, delete-orphan")

    @property
    def number(self) -> str:
        """SA-<year>-<6 digits>: what the email and the pages call the alert."""
        year = self.created_at.year if self.created_at else utcnow().year
        return f"SA-{year}-{self.id:06d}"

    @property
    def why(self) -> str:
        """The kind of link, in words: never what the link's other end is."""
        if self.reason == "in_case":
            return f"linked to case as {self.role}" if self.role else "linked to case"
        if self.reason == "link":
            return f"linked in the case ({self.link_type})"
        if self.reason == "one_link":
            return f"one link from a case entity ({self.link_type})"
        return "also in another agency's case"

    def __repr__(self) -> str:
        return f"<SurvivorAlert {self.id} {self.reason}>"


class AlertFollowUp(db.Model):
    """What a victim specialist did about an alert: who, when, what, and a note."""

    __tablename__ = "alert_follow_ups"
    __table_args__ = (CheckConstraint(_in("action", FOLLOW_UP_ACTIONS), name="action"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("survivor_alerts.id", ondelete="CASCADE"),
                                          index=True)
    action: Mapped[str] = mapped_column(String(24))
    note: Mapped[str] = mapped_column(Text, default="")
    by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    alert: Mapped[SurvivorAlert] = relationship(back_populates="follow_ups")
    by: Mapped[User] = relationship(lazy="joined")


class AlertCheck(db.Model):
    """A survivor-alert check owed for one committed write: the transactional outbox.

    hooks.py adds the row in the transaction that writes the case memberships and
    links it names, so it exists if and only if they committed. After the commit a
    job is asked to run it at once (the fast path); if the broker refused that job,
    the periodic sweep (tasks.sweep_alert_checks) runs it a few seconds later. Running
    a check marks it processed in the same transaction as the alerts it raised, so it
    is run once, whoever gets there first. A check that fails keeps `processed_at`
    empty, counts `attempts`, keeps the `last_error` and is tried again from
    `retry_at`; after service.CHECK_ATTEMPTS_MAX it waits for a person (service.outbox_status).

    Ids only, never names: `bulk` is [kind, case id, the table's highest id before the
    insert] for rows an import wrote in bulk (that case's rows above it).
    """

    __tablename__ = "victims_alert_outbox"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_victims_alert_outbox_waiting", "processed_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_entity_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    link_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    entity_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    bulk: Mapped[list[list[Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    retry_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # not before, after a failure
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    def __repr__(self) -> str:
        return f"<AlertCheck {self.id} {'done' if self.processed_at else 'waiting'}>"
