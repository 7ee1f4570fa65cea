"""The case timeline: a small registry of sources of dated events.

Each source is a function `(case, actor) -> iterable of TimelineEvent` named
once. The service checks that the actor may read the case before it asks any
source, then merges and orders what they return. Another package adds its own
events (links with dates, evidence collected, calls imported) with

    from taskforce.investigations.timeline import timeline_source, TimelineEvent

    @timeline_source("evidence")
    def _evidence(case, actor):
        for item in ...:
            yield TimelineEvent(at=item.collected_at, kind="evidence", ...)

A source must redact what this actor may not read (survivor identities, say),
as its own serializers do; it is given the actor for that.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time

from sqlalchemy import select

from taskforce.accounts.permissions import Actor
from taskforce.extensions import db
from taskforce.investigations.models import (
    CASE_ROLES,
    CASE_STATUSES,
    LEAD_OUTCOMES,
    LEAD_SOURCES,
    PARTNER_ACCESS,
    Lead,
    Note,
    Task,
)

Source = Callable[..., Iterable["TimelineEvent"]]

_SOURCES: dict[str, Source] = {}


@dataclass(frozen=True)
class TimelineEvent:
    at: date | datetime  # when it happened; a date is taken as 00:00 UTC and marked all_day
    kind: str  # which source: note, status, lead, task, team, partner, ...
    summary: str  # one line, already redacted for the actor
    actor: str | None = None  # username of who did it, if anyone
    detail: str = ""
    object_type: str | None = None
    object_id: int | None = None
    all_day: bool = False


def as_instant(value: date | datetime) -> datetime:
    """A date becomes midnight UTC; a naive datetime is taken as UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value, time.min, tzinfo=UTC)


def timeline_source(name: str) -> Callable[[Source], Source]:
    """Register a source of events under a name (registering a name again replaces it)."""

    def deco(fn: Source) -> Source:
        _SOURCES[name] = fn
        return fn

    return deco


def unregister(name: str) -> None:
    _SOURCES.pop(name, None)


def sources() -> dict[str, Source]:
    return dict(_SOURCES)


def collect(case, actor: Actor) -> list[TimelineEvent]:
    """Every source's events for this case, oldest first (ties keep source order)."""
    events: list[TimelineEvent] = []
    for fn in _SOURCES.values():
        events.extend(fn(case, actor))
    keyed = [(as_instant(e.at), i, e) for i, e in enumerate(events)]
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [replace(e, at=at, all_day=e.all_day or not isinstance(e.at, datetime))
            for at, _, e in keyed]


def _name(user) -> str | None:
    return user.username if user is not None else None


# The sources this package owns -------------------------------------------------

@timeline_source("status")
def _status_changes(case, actor: Actor):

    for ch in case.status_changes:
        if ch.from_status is None:
            summary = f"Case opened as {CASE_STATUSES[ch.to_status]}"
        else:
            summary = (f"Status changed from {CASE_STATUSES[ch.from_status]} "
                       f"to {CASE_STATUSES[ch.to_status]}")
        yield TimelineEvent(at=ch.changed_at, kind="status", summary=summary,
                            actor=_name(ch.changed_by), detail=ch.reason,
                            object_type="case_status_change", object_id=ch.id)


@timeline_source("team")
def _team(case, actor: Actor):

    for m in case.members:
        role = CASE_ROLES[m.case_role]
        yield TimelineEvent(at=m.added_at, kind="team",
                            summary=f"{m.user.username} joined the team as {role}",
                            actor=_name(m.added_by), object_type="case_member", object_id=m.id)
        if m.removed_at is not None:
            yield TimelineEvent(at=m.removed_at, kind="team",
                                summary=f"{m.user.username} left the team ({role})",
                                actor=_name(m.removed_by), object_type="case_member",
                                object_id=m.id)
    for g in case.partner_grants:
        yield TimelineEvent(at=g.granted_at, kind="partner",
                            summary=f"{g.agency.name} granted {PARTNER_ACCESS[g.access].lower()} "
                                    f"access", actor=_name(g.granted_by),
                            object_type="partner_grant", object_id=g.id)
        if g.revoked_at is not None:
            yield TimelineEvent(at=g.revoked_at, kind="partner",
                                summary=f"{g.agency.name}'s access revoked",
                                actor=_name(g.revoked_by), object_type="partner_grant",
                                object_id=g.id)


@timeline_source("lead")
def _leads(case, actor: Actor):

    for lead in db.session.scalars(select(Lead).where(Lead.case_id == case.id)):
        if lead.received_on is not None:
            yield TimelineEvent(at=lead.received_on, all_day=True, kind="lead",
                                summary=f"Lead received ({LEAD_SOURCES[lead.source]}): "
                                        f"{lead.title}", object_type="lead", object_id=lead.id)
        yield TimelineEvent(at=lead.created_at, kind="lead",
                            summary=f"Lead recorded: {lead.title}", actor=_name(lead.created_by),
                            object_type="lead", object_id=lead.id)
        if lead.assigned_at is not None and lead.assignee is not None:
            yield TimelineEvent(at=lead.assigned_at, kind="lead",
                                summary=f"Lead assigned to {lead.assignee.username}: {lead.title}",
                                object_type="lead", object_id=lead.id)
        if lead.worked_at is not None:
            yield TimelineEvent(at=lead.worked_at, kind="lead",
                                summary=f"Lead worked: {lead.title}",
                                object_type="lead", object_id=lead.id)
        if lead.closed_at is not None:
            outcome = LEAD_OUTCOMES.get(lead.outcome or "", lead.outcome or "")
            yield TimelineEvent(at=lead.closed_at, kind="lead",
                                summary=f"Lead closed ({outcome}): {lead.title}",
                                actor=_name(lead.closed_by), detail=lead.outcome_notes,
                                object_type="lead", object_id=lead.id)


@timeline_source("task")
def _tasks(case, actor: Actor):

    for task in db.session.scalars(select(Task).where(Task.case_id == case.id)):
        who = f" for {task.assignee.username}" if task.assignee is not None else ""
        yield TimelineEvent(at=task.created_at, kind="task",
                            summary=f"Task set{who}: {task.title}", actor=_name(task.created_by),
                            object_type="task", object_id=task.id)
        if task.done_at is not None:
            yield TimelineEvent(at=task.done_at, kind="task", summary=f"Task done: {task.title}",
                                actor=_name(task.done_by), object_type="task", object_id=task.id)


@timeline_source("note")
def _notes(case, actor: Actor):

    for note in db.session.scalars(select(Note).where(Note.case_id == case.id)):
        first_line = note.body.strip().splitlines()[0] if note.body.strip() else ""
        yield TimelineEvent(at=note.event_on or note.created_at, all_day=note.event_on is not None,
                            kind="note", summary=first_line[:200], actor=_name(note.author),
                            detail=note.body, object_type="note", object_id=note.id)
