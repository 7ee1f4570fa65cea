"""Investigations service: the only place that reads or changes cases.

Plain functions with keyword-only arguments and the actor passed in. Each one
loads its case through `get_case_or_404` (the one access check), validates
its input before it writes anything (Invalid with `fields`), writes the audit
record in the same transaction as the change, and commits once. Reads are
audited too, and commit their audit record.

A case the actor may not read answers NotFound, so its existence is not
revealed; one the actor may read but not change answers Forbidden.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from taskforce.accounts.models import Agency, User, utcnow
from taskforce.accounts.permissions import Actor
from taskforce.audit import service as audit
from taskforce.errors import Conflict, Forbidden, Invalid, NotFound
from taskforce.extensions import db
from taskforce.investigations import policy
from taskforce.investigations import timeline as timeline_registry
from taskforce.investigations.models import (
    CASE_ROLES,
    CASE_STATUSES,
    LEAD_OUTCOMES,
    LEAD_SOURCES,
    LEAD_STATUSES,
    OFFENCES,
    PARTNER_ACCESS,
    Case,
    CaseMember,
    CaseNumberSequence,
    CaseOffence,
    CaseStatusChange,
    Lead,
    Note,
    PartnerGrant,
    Task,
)
from taskforce.investigations.policy import MANAGE, READ, WRITE, Access
from taskforce.validation import FieldErrors as _Errors
from taskforce.validation import as_id as _as_id

__all__ = [
    "MANAGE",
    "READ",
    "STATUS_TRANSITIONS",
    "WRITE",
    "add_lead",
    "add_member",
    "add_note",
    "add_task",
    "assign_lead",
    "case_page",
    "change_lead",
    "change_status",
    "close_lead",
    "complete_task",
    "get_case",
    "get_case_or_404",
    "grant_partner",
    "list_cases",
    "list_leads",
    "list_notes",
    "list_tasks",
    "mark_lead_worked",
    "open_case",
    "remove_member",
    "revoke_partner",
    "timeline",
]

# Where a case may go from each status. A closed case can only be reopened.
STATUS_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("active", "suspended", "referred_for_prosecution", "closed"),
    "active": ("suspended", "referred_for_prosecution", "closed"),
    "suspended": ("active", "closed"),
    "referred_for_prosecution": ("active", "closed"),
    "closed": ("active",),
}

TITLE_MAX = 200
TEXT_MAX = 20_000
REASON_MAX = 2_000
PER_PAGE_MAX = 200

_DENIED_NOT_FOUND = "No such case, or it is not shared with you."
_DENIED = {
    WRITE: "You may read this case but not add to it.",
    MANAGE: "Only the case lead, the lead investigator or a supervisor of the lead agency "
            "may do this.",
}


def now() -> datetime:
    """The clock every service reads (tests replace it)."""
    return utcnow()


# The one access check --------------------------------------------------------

def get_case_or_404(*, actor: Actor, case_id: Any, action: Access = READ,
                    attempt: str = "case.read") -> Case:
    """The case, if the actor may do `action` to it.

    Not readable (or no such case): NotFound. Readable but not `action`: Forbidden.
    A refused attempt is audited on its own (the request's transaction rolls back).
    """
    row_id = _as_id(case_id)
    case = db.session.get(Case, row_id) if row_id is not None else None
    level = policy.access(actor, case) if case is not None else Access.NONE
    if level >= action:
        return case
    audit.record_now(actor=actor, action=attempt, outcome="denied", object_type="case",
                     object_id=case_id, case_id=case.id if case is not None else None,
                     details={"needed": action.name.lower()})
    if level < READ:
        raise NotFound(_DENIED_NOT_FOUND)
    raise Forbidden(_DENIED.get(action, _DENIED[MANAGE]))


def _ensure_not_closed(case: Case) -> None:
    if case.status == "closed":
        raise Conflict("This case is closed; reopen it before adding to it.")


def _touch(case: Case, at: datetime) -> None:
    case.updated_at = at


def _claim(model, row_id: int, *conditions, message: str, **values) -> None:
    """Change a row only if it is still as we read it (compare-and-set).

    Run first, before anything else is added to the session: a concurrent
    change that got there first makes this match no row, and the caller gets
    Conflict with nothing written. On PostgreSQL the UPDATE waits for the other
    transaction and re-checks its condition against what that one committed.
    """
    result = db.session.execute(
        update(model).where(model.id == row_id, *conditions).values(**values)
        .execution_options(synchronize_session="fetch"))
    if result.rowcount != 1:
        db.session.rollback()
        raise Conflict(message)


def _commit(conflict_message: str) -> None:
    """Commit; a uniqueness race lost to a concurrent request is a Conflict."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(conflict_message) from None


def _active_member(case: Case, user_id: int | None) -> CaseMember | None:
    for m in case.members:
        if m.user_id == user_id and m.removed_at is None:
            return m
    return None


def _team_user(errors: _Errors, name: str, case: Case, user_id: Any, *,
               required: bool) -> int | None:
    """An assignee must be on the team: otherwise they could not see what they are given."""
    uid = errors.integer(name, user_id, required=required)
    if uid is not None and _active_member(case, uid) is None:
        errors.add(name, "Must be a member of the case team.")
        return None
    return uid


def _access_name(level: Access) -> str:
    return {Access.READ: "read", Access.WRITE: "contribute", Access.MANAGE: "manage"}.get(
        level, "none")


# Case numbers -----------------------------------------------------------------

def _next_sequence(agency_id: int, year: int) -> int:
    """Allocate the next sequence for (agency, year), safely under concurrency.

    An upsert that increments and returns in one statement: on PostgreSQL the
    row stays locked until this transaction ends, so a concurrent opener waits
    and then gets the next value; SQLite serialises writers. A rollback gives
    the number back.
    """
    table = CaseNumberSequence.__table__
    dialect = db.session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table).values(agency_id=agency_id, year=year, last_value=1)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.agency_id, table.c.year],
            set_={"last_value": table.c.last_value + 1},
        ).returning(table.c.last_value)
        return int(db.session.execute(stmt).scalar_one())
    row = db.session.execute(
        select(CaseNumberSequence).where(CaseNumberSequence.agency_id == agency_id,
                                         CaseNumberSequence.year == year).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        row = CaseNumberSequence(agency_id=agency_id, year=year, last_value=0)
        db.session.add(row)
    row.last_value += 1
    db.session.flush()
    return row.last_value


def format_case_number(ori: str, year: int, sequence: int) -> str:
    return f"{ori}-{year}-{sequence:04d}"


# Cases -----------------------------------------------------------------------

@dataclass
class CaseView:
    """A case and how far the actor reaches into it."""

    case: Case
    access: Access

    @property
    def your_access(self) -> str:
        return _access_name(self.access)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.case, name)


@dataclass
class CasePage:
    case: Case
    access: Access
    leads: list[Lead]
    tasks: list[Task]
    notes: list[Note]
    events: list[timeline_registry.TimelineEvent]
    partner_agencies: list[Agency] = field(default_factory=list)

    @property
    def can_contribute(self) -> bool:
        return self.access >= WRITE and self.case.status != "closed"

    @property
    def can_manage(self) -> bool:
        return self.access >= MANAGE

    @property
    def next_statuses(self) -> tuple[str, ...]:
        return STATUS_TRANSITIONS[self.case.status]

    @property
    def your_access(self) -> str:
        return _access_name(self.access)


@dataclass
class CaseList:
    items: list[Case]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def list_cases(*, actor: Actor, status: str | None = None, offence: str | None = None,
               q: str | None = None, page: Any = 1, per_page: Any = 50) -> CaseList:
    """The cases the actor may read, newest first, filtered."""
    errors = _Errors()
    status = errors.choice("status", status, CASE_STATUSES, required=False)
    offence = errors.choice("offence", offence, OFFENCES, required=False)
    q = errors.text("q", q, max_len=TITLE_MAX, required=False)
    page_n = errors.integer("page", page, required=False) or 1
    per_page_n = errors.integer("per_page", per_page, required=False) or 50
    if page_n < 1:
        errors.add("page", "Must be 1 or more.")
    if not 1 <= per_page_n <= PER_PAGE_MAX:
        errors.add("per_page", f"Must be between 1 and {PER_PAGE_MAX}.")
    errors.raise_if_any()

    query = policy.visible_cases(select(Case), actor)
    if status:
        query = query.where(Case.status == status)
    if offence:
        query = query.where(Case.offence_rows.any(CaseOffence.offence == offence))
    if q:
        like = f"%{q.lower()}%"
        query = query.where(func.lower(Case.title).like(like) | func.lower(Case.number).like(like))
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = list(db.session.scalars(
        query.options(selectinload(Case.lead_investigator))
        .order_by(Case.opened_at.desc(), Case.id.desc())
        .limit(per_page_n).offset((page_n - 1) * per_page_n)))
    audit.record(actor=actor, action="case.list", object_type="case",
                 details={"status": status, "offence": offence, "q": q or None, "page": page_n,
                          "returned": [c.id for c in items]})
    db.session.commit()
    return CaseList(items=items, total=total, page=page_n, per_page=per_page_n)


def get_case(*, actor: Actor, case_id: Any) -> CaseView:
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="case.read")
    level = policy.access(actor, case)
    audit.record(actor=actor, action="case.read", object_type="case", object_id=case.id,
                 case_id=case.id)
    db.session.commit()
    return CaseView(case=case, access=level)


def case_page(*, actor: Actor, case_id: Any) -> CasePage:
    """Everything the case page shows, read (and audited) at once."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="case.read")
    level = policy.access(actor, case)
    leads = list(db.session.scalars(
        select(Lead).where(Lead.case_id == case.id).order_by(Lead.created_at, Lead.id)))
    tasks = list(db.session.scalars(
        select(Task).where(Task.case_id == case.id)
        .order_by(Task.done_at.is_not(None), Task.due_on.is_(None), Task.due_on, Task.id)))
    notes = list(db.session.scalars(
        select(Note).where(Note.case_id == case.id).order_by(Note.created_at.desc(),
                                                             Note.id.desc())))
    events = timeline_registry.collect(case, actor)
    agencies: list[Agency] = []
    if level >= MANAGE:
        granted = {g.agency_id for g in case.active_grants}
        agencies = [a for a in db.session.scalars(
            select(Agency).where(Agency.active.is_(True)).order_by(Agency.name))
            if a.id != case.agency_id and a.id not in granted]
    audit.record(actor=actor, action="case.read", object_type="case", object_id=case.id,
                 case_id=case.id, details={"view": "page"})
    db.session.commit()
    return CasePage(case=case, access=level, leads=leads, tasks=tasks, notes=notes,
                    events=events, partner_agencies=agencies)


def open_case(*, actor: Actor, title: Any, offences: Any, summary: Any = "") -> Case:
    """Open a case in the actor's agency; the actor becomes lead investigator and team lead."""
    if not policy.can_open_case(actor):
        raise Forbidden("Only investigators and supervisors open cases.")
    errors = _Errors()
    title = errors.text("title", title, max_len=TITLE_MAX)
    offences = errors.choices("offences", offences, OFFENCES)
    summary = errors.text("summary", summary, max_len=TEXT_MAX, required=False)
    errors.raise_if_any()
    agency = db.session.get(Agency, actor.agency_id)
    if agency is None or not agency.active:
        raise Forbidden("Your agency cannot open cases.")

    at = now()
    sequence = _next_sequence(agency.id, at.year)
    case = Case(number=format_case_number(agency.ori, at.year, sequence), agency_id=agency.id,
                year=at.year, sequence=sequence, title=title, summary=summary, status="open",
                lead_investigator_id=actor.user_id, opened_by_id=actor.user_id, opened_at=at,
                updated_at=at)
    case.offences = offences
    case.members.append(CaseMember(user_id=actor.user_id, case_role="lead",
                                   added_by_id=actor.user_id, added_at=at))
    case.status_changes.append(CaseStatusChange(from_status=None, to_status="open",
                                                reason="Case opened.",
                                                changed_by_id=actor.user_id, changed_at=at))
    db.session.add(case)
    db.session.flush()
    audit.record(actor=actor, action="case.open", object_type="case", object_id=case.id,
                 case_id=case.id, details={"number": case.number, "offences": offences})
    db.session.commit()
    return case


def change_status(*, actor: Actor, case_id: Any, status: Any, reason: Any) -> CaseStatusChange:
    case = get_case_or_404(actor=actor, case_id=case_id, action=MANAGE,
                           attempt="case.status_change")
    errors = _Errors()
    status = errors.choice("status", status, CASE_STATUSES)
    reason = errors.text("reason", reason, max_len=REASON_MAX)
    if status and status not in STATUS_TRANSITIONS[case.status]:
        allowed = ", ".join(STATUS_TRANSITIONS[case.status])
        errors.add("status", f"A {CASE_STATUSES[case.status].lower()} case can become: {allowed}.")
    errors.raise_if_any()

    at = now()
    previous = case.status
    _claim(Case, case.id, Case.status == previous, status=status, updated_at=at,
           closed_at=at if status == "closed" else None,
           message="The case's status was changed meanwhile; reload and try again.")
    change = CaseStatusChange(case_id=case.id, from_status=previous, to_status=status,
                              reason=reason, changed_by_id=actor.user_id, changed_at=at)
    db.session.add(change)
    db.session.flush()
    audit.record(actor=actor, action="case.status_change", object_type="case",
                 object_id=case.id, case_id=case.id,
                 details={"from": previous, "to": status, "change_id": change.id})
    db.session.commit()
    return change


# Team ------------------------------------------------------------------------

def _find_user(errors: _Errors, user_id: Any, username: Any) -> User | None:
    user = None
    if user_id not in (None, ""):
        uid = errors.integer("user_id", user_id)
        user = db.session.get(User, uid) if uid is not None else None
        name = "user_id"
    elif isinstance(username, str) and username.strip():
        user = db.session.scalar(select(User).where(User.username == username.strip()))
        name = "username"
    else:
        errors.add("user_id", "Name the user to add.")
        return None
    if user is None or not user.active:
        errors.add(name, "No active user by that name.")
        return None
    return user


def add_member(*, actor: Actor, case_id: Any, case_role: Any, user_id: Any = None,
               username: Any = None) -> CaseMember:
    """Put a user (of any agency) on the team; the team lead changes only by change_lead."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=MANAGE,
                           attempt="case.member_add")
    _ensure_not_closed(case)
    errors = _Errors()
    roles = [r for r in CASE_ROLES if r != "lead"]
    role = errors.choice("case_role", case_role, roles)
    user = _find_user(errors, user_id, username)
    errors.raise_if_any()
    if _active_member(case, user.id) is not None:
        raise Conflict(f"{user.username} is already on the team.")

    member = CaseMember(user_id=user.id, case_role=role, added_by_id=actor.user_id,
                        added_at=now())
    case.members.append(member)
    _touch(case, member.added_at)
    db.session.flush()
    audit.record(actor=actor, action="case.member_add", object_type="case_member",
                 object_id=member.id, case_id=case.id,
                 details={"user_id": user.id, "case_role": role})
    _commit(f"{user.username} is already on the team.")
    return member


def remove_member(*, actor: Actor, case_id: Any, member_id: Any) -> CaseMember:
    case = get_case_or_404(actor=actor, case_id=case_id, action=MANAGE,
                           attempt="case.member_remove")
    member = next((m for m in case.members if str(m.id) == str(member_id)
                   and m.removed_at is None), None)
    if member is None:
        raise NotFound("No such team member on this case.")
    if member.case_role == "lead" or member.user_id == case.lead_investigator_id:
        raise Invalid("Make someone else the lead before removing the lead.",
                      fields={"member_id": ["The lead cannot be removed."]})
    at = now()
    member.removed_at, member.removed_by_id = at, actor.user_id
    _touch(case, at)
    audit.record(actor=actor, action="case.member_remove", object_type="case_member",
                 object_id=member.id, case_id=case.id, details={"user_id": member.user_id})
    db.session.commit()
    return member


def change_lead(*, actor: Actor, case_id: Any, user_id: Any) -> Case:
    """Make another team member the lead investigator and team lead; the old lead
    stays on the team as an investigator."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=MANAGE,
                           attempt="case.lead_change")
    _ensure_not_closed(case)
    errors = _Errors()
    uid = _team_user(errors, "user_id", case, user_id, required=True)
    if uid is not None and uid == case.lead_investigator_id:
        errors.add("user_id", "Already the lead.")
    errors.raise_if_any()

    at = now()
    previous = case.lead_investigator_id
    for m in list(case.members):
        if m.removed_at is None and (m.user_id == uid or m.case_role == "lead"):
            m.removed_at, m.removed_by_id = at, actor.user_id
            role = "lead" if m.user_id == uid else "investigator"
            case.members.append(CaseMember(user_id=m.user_id, case_role=role,
                                           added_by_id=actor.user_id, added_at=at))
    case.lead_investigator_id = uid
    _touch(case, at)
    audit.record(actor=actor, action="case.lead_change", object_type="case", object_id=case.id,
                 case_id=case.id, details={"from": previous, "to": uid})
    _commit("The team was changed meanwhile; reload and try again.")
    return case


# Partner agencies ----------------------------------------------------------------

def grant_partner(*, actor: Actor, case_id: Any, agency_id: Any, access: Any) -> PartnerGrant:
    """Give another agency read or contribute access (replacing a grant it holds)."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=MANAGE,
                           attempt="case.partner_grant")
    _ensure_not_closed(case)
    errors = _Errors()
    access = errors.choice("access", access, PARTNER_ACCESS)
    aid = errors.integer("agency_id", agency_id)
    agency = db.session.get(Agency, aid) if aid is not None else None
    if aid is not None and (agency is None or not agency.active):
        errors.add("agency_id", "No such agency.")
    elif agency is not None and agency.id == case.agency_id:
        errors.add("agency_id", "The lead agency already holds the case.")
    errors.raise_if_any()

    at = now()
    current = policy.active_grant(case, agency.id)
    if current is not None:
        if current.access == access:
            raise Conflict(f"{agency.name} already has {access} access.")
        current.revoked_at, current.revoked_by_id = at, actor.user_id
    grant = PartnerGrant(agency_id=agency.id, access=access, granted_by_id=actor.user_id,
                         granted_at=at)
    case.partner_grants.append(grant)
    _touch(case, at)
    db.session.flush()
    audit.record(actor=actor, action="case.partner_grant", object_type="partner_grant",
                 object_id=grant.id, case_id=case.id,
                 details={"agency_id": agency.id, "access": access,
                          "replaces": current.id if current is not None else None})
    _commit(f"{agency.name}'s access was changed meanwhile; reload and try again.")
    return grant


def revoke_partner(*, actor: Actor, case_id: Any, grant_id: Any) -> PartnerGrant:
    case = get_case_or_404(actor=actor, case_id=case_id, action=MANAGE,
                           attempt="case.partner_revoke")
    grant = next((g for g in case.partner_grants if str(g.id) == str(grant_id)
                  and g.revoked_at is None), None)
    if grant is None:
        raise NotFound("No such partner grant on this case.")
    at = now()
    grant.revoked_at, grant.revoked_by_id = at, actor.user_id
    _touch(case, at)
    audit.record(actor=actor, action="case.partner_revoke", object_type="partner_grant",
                 object_id=grant.id, case_id=case.id, details={"agency_id": grant.agency_id})
    db.session.commit()
    return grant


# Leads -----------------------------------------------------------------------

def _lead_of(case: Case, lead_id: Any) -> Lead:
    row_id = _as_id(lead_id)
    lead = db.session.get(Lead, row_id) if row_id is not None else None
    if lead is None or lead.case_id != case.id:
        raise NotFound("No such lead on this case.")
    return lead


def list_leads(*, actor: Actor, case_id: Any, status: Any = None) -> list[Lead]:
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="lead.list")
    errors = _Errors()
    status = errors.choice("status", status, LEAD_STATUSES, required=False)
    errors.raise_if_any()
    query = select(Lead).where(Lead.case_id == case.id)
    if status:
        query = query.where(Lead.status == status)
    leads = list(db.session.scalars(query.order_by(Lead.created_at, Lead.id)))
    audit.record(actor=actor, action="lead.list", object_type="case", object_id=case.id,
                 case_id=case.id, details={"status": status})
    db.session.commit()
    return leads


def add_lead(*, actor: Actor, case_id: Any, title: Any, source: Any, details: Any = "",
             source_reference: Any = "", received_on: Any = None,
             assignee_id: Any = None) -> Lead:
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE, attempt="lead.add")
    _ensure_not_closed(case)
    errors = _Errors()
    title = errors.text("title", title, max_len=TITLE_MAX)
    source = errors.choice("source", source, LEAD_SOURCES)
    details = errors.text("details", details, max_len=TEXT_MAX, required=False)
    source_reference = errors.text("source_reference", source_reference, max_len=100,
                                   required=False)
    received_on = errors.date("received_on", received_on)
    assignee = _team_user(errors, "assignee_id", case, assignee_id, required=False)
    errors.raise_if_any()

    at = now()
    lead = Lead(case_id=case.id, title=title, details=details, source=source,
                source_reference=source_reference, received_on=received_on,
                status="assigned" if assignee else "new", assignee_id=assignee,
                assigned_at=at if assignee else None, created_by_id=actor.user_id,
                created_at=at)
    db.session.add(lead)
    _touch(case, at)
    db.session.flush()
    audit.record(actor=actor, action="lead.add", object_type="lead", object_id=lead.id,
                 case_id=case.id, details={"source": source, "assignee_id": assignee})
    db.session.commit()
    return lead


_LEAD_MOVED = "The lead was changed meanwhile; reload and try again."


def _lead_step(errors: _Errors, lead: Lead, allowed_from: tuple[str, ...], doing: str) -> None:
    if lead.status not in allowed_from:
        errors.add("status", f"A {lead.status} lead cannot be {doing}; it must be "
                             + " or ".join(allowed_from) + ".")


def assign_lead(*, actor: Actor, case_id: Any, lead_id: Any, assignee_id: Any) -> Lead:
    """new -> assigned, or reassign an assigned lead."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE, attempt="lead.assign")
    _ensure_not_closed(case)
    lead = _lead_of(case, lead_id)
    errors = _Errors()
    _lead_step(errors, lead, ("new", "assigned"), "assigned")
    assignee = _team_user(errors, "assignee_id", case, assignee_id, required=True)
    errors.raise_if_any()

    at = now()
    previous = lead.assignee_id
    _claim(Lead, lead.id, Lead.status.in_(("new", "assigned")), status="assigned",
           assignee_id=assignee, assigned_at=at, message=_LEAD_MOVED)
    _touch(case, at)
    audit.record(actor=actor, action="lead.assign", object_type="lead", object_id=lead.id,
                 case_id=case.id, details={"from": previous, "to": assignee})
    db.session.commit()
    return lead


def mark_lead_worked(*, actor: Actor, case_id: Any, lead_id: Any) -> Lead:
    """assigned -> worked."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE, attempt="lead.work")
    _ensure_not_closed(case)
    lead = _lead_of(case, lead_id)
    errors = _Errors()
    _lead_step(errors, lead, ("assigned",), "marked worked")
    errors.raise_if_any()

    at = now()
    _claim(Lead, lead.id, Lead.status == "assigned", status="worked", worked_at=at,
           message=_LEAD_MOVED)
    _touch(case, at)
    audit.record(actor=actor, action="lead.work", object_type="lead", object_id=lead.id,
                 case_id=case.id)
    db.session.commit()
    return lead


def close_lead(*, actor: Actor, case_id: Any, lead_id: Any, outcome: Any,
               outcome_notes: Any = "") -> Lead:
    """worked -> closed, with an outcome."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE, attempt="lead.close")
    _ensure_not_closed(case)
    lead = _lead_of(case, lead_id)
    errors = _Errors()
    _lead_step(errors, lead, ("worked",), "closed")
    outcome = errors.choice("outcome", outcome, LEAD_OUTCOMES)
    outcome_notes = errors.text("outcome_notes", outcome_notes, max_len=TEXT_MAX, required=False)
    errors.raise_if_any()

    at = now()
    _claim(Lead, lead.id, Lead.status == "worked", status="closed", outcome=outcome,
           outcome_notes=outcome_notes, closed_at=at, closed_by_id=actor.user_id,
           message=_LEAD_MOVED)
    _touch(case, at)
    audit.record(actor=actor, action="lead.close", object_type="lead", object_id=lead.id,
                 case_id=case.id, details={"outcome": outcome})
    db.session.commit()
    return lead


# Tasks -----------------------------------------------------------------------

def list_tasks(*, actor: Actor, case_id: Any) -> list[Task]:
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="task.list")
    tasks = list(db.session.scalars(
        select(Task).where(Task.case_id == case.id).order_by(Task.created_at, Task.id)))
    audit.record(actor=actor, action="task.list", object_type="case", object_id=case.id,
                 case_id=case.id)
    db.session.commit()
    return tasks


def add_task(*, actor: Actor, case_id: Any, title: Any, assignee_id: Any = None,
             due_on: Any = None) -> Task:
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE, attempt="task.add")
    _ensure_not_closed(case)
    errors = _Errors()
    title = errors.text("title", title, max_len=TITLE_MAX)
    assignee = _team_user(errors, "assignee_id", case, assignee_id, required=False)
    due_on = errors.date("due_on", due_on)
    errors.raise_if_any()

    at = now()
    task = Task(case_id=case.id, title=title, assignee_id=assignee, due_on=due_on,
                created_by_id=actor.user_id, created_at=at)
    db.session.add(task)
    _touch(case, at)
    db.session.flush()
    audit.record(actor=actor, action="task.add", object_type="task", object_id=task.id,
                 case_id=case.id, details={"assignee_id": assignee})
    db.session.commit()
    return task


def complete_task(*, actor: Actor, case_id: Any, task_id: Any) -> Task:
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE, attempt="task.complete")
    _ensure_not_closed(case)
    row_id = _as_id(task_id)
    task = db.session.get(Task, row_id) if row_id is not None else None
    if task is None or task.case_id != case.id:
        raise NotFound("No such task on this case.")
    if task.done_at is not None:
        raise Conflict("This task is already done.")
    at = now()
    _claim(Task, task.id, Task.done_at.is_(None), done_at=at, done_by_id=actor.user_id,
           message="This task is already done.")
    _touch(case, at)
    audit.record(actor=actor, action="task.complete", object_type="task", object_id=task.id,
                 case_id=case.id)
    db.session.commit()
    return task


# Notes -----------------------------------------------------------------------

def list_notes(*, actor: Actor, case_id: Any) -> list[Note]:
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="note.list")
    notes = list(db.session.scalars(
        select(Note).where(Note.case_id == case.id).order_by(Note.created_at, Note.id)))
    audit.record(actor=actor, action="note.list", object_type="case", object_id=case.id,
                 case_id=case.id)
    db.session.commit()
    return notes


def add_note(*, actor: Actor, case_id: Any, body: Any, event_on: Any = None) -> Note:
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE, attempt="note.add")
    _ensure_not_closed(case)
    errors = _Errors()
    body = errors.text("body", body, max_len=TEXT_MAX)
    event_on = errors.date("event_on", event_on)
    errors.raise_if_any()

    at = now()
    note = Note(case_id=case.id, author_id=actor.user_id, body=body, event_on=event_on,
                created_at=at)
    db.session.add(note)
    _touch(case, at)
    db.session.flush()
    audit.record(actor=actor, action="note.add", object_type="note", object_id=note.id,
                 case_id=case.id)
    db.session.commit()
    return note


# Timeline --------------------------------------------------------------------

def timeline(*, actor: Actor, case_id: Any) -> list[timeline_registry.TimelineEvent]:
    """Every dated event of the case from every registered source, oldest first."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="case.timeline")
    events = timeline_registry.collect(case, actor)
    audit.record(actor=actor, action="case.timeline", object_type="case", object_id=case.id,
                 case_id=case.id, details={"events": len(events)})
    db.session.commit()
    return events
