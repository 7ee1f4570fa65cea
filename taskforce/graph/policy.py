"""Who may see which entity, and who may see a survivor's identity.

Need to know (DESIGN.md invariant 2): an entity is visible only through a case
the actor may read (`investigations.policy.visible_cases`, the one scope).

Survivors (invariant 3): `may_see_survivor(actor, case)` is the one answer to
"may this person see the survivors' names, dates of birth and identifiers in
this case?". Everything that shows an entity (pages, API, the timeline source,
exports) asks it through `reveals()`; nobody else decides.
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, select

from taskforce.accounts.permissions import Actor
from taskforce.graph.models import CaseEntity, Entity
from taskforce.investigations import policy as case_policy
from taskforce.investigations.models import Case

SURVIVOR_ROLE = "victim_specialist"  # the user role that may see survivor identities


def visible_case_ids(actor: Actor) -> Select:
    """The ids of the cases the actor may read, as a subquery (the one scope)."""
    return case_policy.visible_cases(select(Case.id), actor)


def visible_entities(query: Select, actor: Actor) -> Select:
    """Narrow a query over Entity to those in a case the actor may read; deny by default."""
    return query.where(Entity.id.in_(
        select(CaseEntity.entity_id).where(CaseEntity.case_id.in_(visible_case_ids(actor)))))


def is_case_lead(actor: Actor, case: Case) -> bool:
    if not actor.authenticated:
        return False
    if case.lead_investigator_id == actor.user_id:
        return True
    member = case_policy.active_membership(actor, case)
    return member is not None and member.case_role == "lead"


def may_see_survivor(actor: Actor, case: Case | None) -> bool:
    """Survivor identities in this case: the case lead, and users holding the
    victim_specialist role who are on the case team or belong to an agency the case
    is granted to. Nobody else: not supervisors, not admins, not the rest of the team."""
    if case is None or not actor.authenticated:
        return False
    if case_policy.access(actor, case) < case_policy.READ:
        return False
    if is_case_lead(actor, case):
        return True
    if not actor.has_role(SURVIVOR_ROLE):
        return False
    return (case_policy.active_membership(actor, case) is not None
            or case_policy.active_grant(case, actor.agency_id) is not None)


def reveals(actor: Actor, entity: Entity, cases: Case | Iterable[Case] | None) -> bool:
    """May the actor see this entity's identity, shown in the context of `cases`
    (one case, or every case of the entity the actor may read)?

    Anyone who may read the case sees a non-survivor as entered. A survivor's
    identity needs `may_see_survivor` in at least one of those cases that holds it.
    """
    if not entity.is_survivor:
        return True
    if cases is None:
        return False
    if isinstance(cases, Case):
        cases = [cases]
    mine = set(entity.case_ids)
    return any(c.id in mine and may_see_survivor(actor, c) for c in cases)
