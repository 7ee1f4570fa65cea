"""Who may see which entity, and who may see a survivor's identity.

Need to know (DESIGN.md invariant 2): an entity is visible only through a case
the actor may read (`investigations.policy.visible_cases`, the one scope).

Survivors (invariant 3): `may_see_survivor(actor, case)` is the one answer to
"may this person see the survivors' names, dates of birth and identifiers in
this case?". Everything that shows an entity (pages, API, the timeline source,
exports) asks it through `reveals()`; nobody else decides.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from sqlalchemy import Select, select
from sqlalchemy.orm import aliased

from taskforce.accounts.permissions import Actor
from taskforce.extensions import db
from taskforce.graph.models import (
    ENTITY_KINDS,
    SHIELDING_LINK_TYPES,
    CaseEntity,
    Entity,
    Link,
)
from taskforce.investigations import policy as case_policy
from taskforce.investigations.models import Case

SURVIVOR_ROLE = "victim_specialist"  # the user role that may see survivor identities


def visible_case_ids(actor: Actor) -> Select:
    """The ids of the cases the actor may read, as a subquery (the one scope)."""
    return case_policy.visible_cases(select(Case.id), actor)


def readable_case_ids(actor: Actor) -> list[int]:
    """The ids of the cases the actor may read, as a list (for graph questions)."""
    return sorted(db.session.scalars(visible_case_ids(actor)))


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


# Shields: a survivor's phones, accounts, emails... ----------------------------------------

Shields = Mapping[int, Mapping[int, str]]  # entity id -> {case id: the survivor's pseudonym}


def shields(entity_ids: Iterable[int]) -> dict[int, dict[int, str]]:
    """Which of these entities are shielded, and in which case: an entity that is not
    a person, tied in a case by a USES or OWNS link (either way) to a survivor, is
    protected like the survivor there (its identifiers would name them). Returns
    entity id -> {case id: that survivor's pseudonym}; absent means not shielded."""
    ids = sorted({int(i) for i in entity_ids})
    out: dict[int, dict[int, str]] = defaultdict(dict)
    if not ids:
        return out
    other = aliased(Entity)
    for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
        for mine_col, other_col in ((Link.source_id, Link.target_id),
                                    (Link.target_id, Link.source_id)):
            rows = db.session.execute(
                select(mine_col.label("eid"), Link.case_id, other.pseudonym)
                .join(other, other.id == other_col)
                .where(mine_col.in_(chunk), Link.type.in_(SHIELDING_LINK_TYPES),
                       other.kind == "person", other.pseudonym.is_not(None))
                .order_by(Link.id)).all()
            for r in rows:
                out[r.eid].setdefault(r.case_id, r.pseudonym)
    kinds = dict(db.session.execute(select(Entity.id, Entity.kind).where(Entity.id.in_(ids))).all())
    return {k: v for k, v in out.items() if kinds.get(k) != "person"}


def shielded_label(entity: Entity, pseudonym: str) -> str:
    return f"{pseudonym}'s {ENTITY_KINDS.get(entity.kind, entity.kind).lower()}"


def reveals_in(actor: Actor, entity: Entity, case: Case, shield: Mapping[int, str] | None,
               *, survivor_ok: Mapping[int, bool] | None = None) -> bool:
    """May the actor see what `case` says about this entity (it must hold it)?
    A survivor, or an entity shielded in this case, needs `may_see_survivor` here."""
    if entity.in_case(case.id) is None:
        return False
    if not entity.is_survivor and not (shield and case.id in shield):
        return True
    if survivor_ok is not None and case.id in survivor_ok:
        return survivor_ok[case.id]
    return may_see_survivor(actor, case)


def reveals(actor: Actor, entity: Entity, cases: Case | Iterable[Case] | None,
            shield: Mapping[int, str] | None = None) -> bool:
    """May the actor see this entity's identity, shown in the context of `cases`
    (one case, or every case of the entity the actor may read)?

    Anyone who may read the case sees a non-survivor as entered. A survivor's
    identity (or a shielded entity's) needs `may_see_survivor` in at least one of
    those cases that holds it.
    """
    if cases is None:
        return False
    if isinstance(cases, Case):
        cases = [cases]
    return any(reveals_in(actor, entity, c, shield) for c in cases)
