"""Who may see and change which case (need to know, DESIGN.md invariant 2).

A user reaches a case in exactly three ways, and in no other:
- as an active member of its team (any case role): read and contribute;
  the team lead and the lead investigator also manage it;
- as a user of a partner agency holding an active grant: read, or read and
  contribute, as granted;
- as a supervisor of the case's lead agency: read, contribute and manage.

Admins administer accounts; the admin role by itself gives no case access
(an admin on a team reaches the case as a team member). Likewise a partner
grant or a supervisor's reach applies to users doing case work, not to
admin-only accounts.

`visible_cases` is the one scope every list of cases goes through; `access`
is the one answer for a single case. Both deny by default and say the same.
"""
from __future__ import annotations

from enum import IntEnum

from sqlalchemy import Select, false, or_, select

from taskforce.accounts.permissions import ROLES, Actor
from taskforce.investigations.models import Case, CaseMember, PartnerGrant

CASE_WORK_ROLES = frozenset(ROLES) - {"admin"}
OPENER_ROLES = ("investigator", "supervisor")  # who may open a case


class Access(IntEnum):
    NONE = 0
    READ = 1
    WRITE = 2  # contribute: leads, tasks, notes
    MANAGE = 3  # team, partners, status, lead investigator


READ, WRITE, MANAGE = Access.READ, Access.WRITE, Access.MANAGE


def _does_case_work(actor: Actor) -> bool:
    return bool(actor.roles & CASE_WORK_ROLES)


def _is_lead_supervisor(actor: Actor, case: Case) -> bool:
    return actor.has_role("supervisor") and actor.agency_id is not None \
        and actor.agency_id == case.agency_id


def visible_cases(query: Select, actor: Actor) -> Select:
    """Narrow a query over Case to the cases the actor may read; deny by default."""
    if not actor.authenticated:
        return query.where(false())
    reach = [Case.id.in_(
        select(CaseMember.case_id).where(CaseMember.user_id == actor.user_id,
                                         CaseMember.removed_at.is_(None)))]
    if actor.agency_id is not None and _does_case_work(actor):
        reach.append(Case.id.in_(
            select(PartnerGrant.case_id).where(PartnerGrant.agency_id == actor.agency_id,
                                               PartnerGrant.revoked_at.is_(None))))
        if actor.has_role("supervisor"):
            reach.append(Case.agency_id == actor.agency_id)
    return query.where(or_(*reach))


def active_membership(actor: Actor, case: Case) -> CaseMember | None:
    if not actor.authenticated:
        return None
    for m in case.members:
        if m.user_id == actor.user_id and m.removed_at is None:
            return m
    return None


def active_grant(case: Case, agency_id: int | None) -> PartnerGrant | None:
    if agency_id is None:
        return None
    for g in case.partner_grants:
        if g.agency_id == agency_id and g.revoked_at is None:
            return g
    return None


def access(actor: Actor, case: Case) -> Access:
    """The most the actor may do to this case."""
    if not actor.authenticated:
        return Access.NONE
    level = Access.NONE
    member = active_membership(actor, case)
    if member is not None:
        lead = member.case_role == "lead" or case.lead_investigator_id == actor.user_id
        level = max(level, Access.MANAGE if lead else Access.WRITE)
    if _does_case_work(actor):
        if _is_lead_supervisor(actor, case):
            level = max(level, Access.MANAGE)
        grant = active_grant(case, actor.agency_id)
        if grant is not None:
            level = max(level, Access.WRITE if grant.access == "contribute" else Access.READ)
    return level


def can_read(actor: Actor, case: Case) -> bool:
    return access(actor, case) >= READ


def can_contribute(actor: Actor, case: Case) -> bool:
    return access(actor, case) >= WRITE


def can_manage_team(actor: Actor, case: Case) -> bool:
    """Add and remove members, grant and revoke partners, change status and lead."""
    return access(actor, case) >= MANAGE


def can_open_case(actor: Actor) -> bool:
    """Investigators and supervisors open cases. Coordinators deconflict other
    people's cases and analysts, prosecutors and victim specialists join them;
    none of them leads one, so none opens one."""
    return actor.authenticated and actor.agency_id is not None and actor.has_role(*OPENER_ROLES)
