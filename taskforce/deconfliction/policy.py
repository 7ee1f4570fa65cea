"""Who may see and act on which hit (need to know, DESIGN.md invariant 2).

A hit has two sides, each a case of some agency. A user is *on* a side when they
are that side's point of contact or may read that side's case (the one case
check, investigations.policy.access). Then:

* they see the hit, with their own side in full (their case number, the
  identifier they entered) and the other side reduced to agency, point of
  contact and identifier kind (schemas.hit_out does that, once);
* they may move it through the workflow when they are the side's point of
  contact or may contribute (WRITE) to its case.

Coordinators of the task force see every hit, with both sides reduced (unless
they are on a side themselves), and may act on any. Nobody else learns that a
hit exists: it answers 404 like one that does not.

Checking without registering ("check before I open a case") is for roles that do
case work or deconflict it: CHECK_ROLES.
"""
from __future__ import annotations

from sqlalchemy import Select, false, or_, select

from taskforce.accounts.permissions import Actor
from taskforce.deconfliction.models import Hit
from taskforce.investigations import policy as case_policy
from taskforce.investigations.models import Case
from taskforce.investigations.policy import READ, WRITE

SIDES = ("a", "b")
CHECK_ROLES = ("investigator", "supervisor", "coordinator", "analyst")
COORDINATOR = "coordinator"


def is_coordinator(actor: Actor) -> bool:
    return actor.authenticated and actor.has_role(COORDINATOR)


def can_check(actor: Actor) -> bool:
    return actor.authenticated and actor.has_role(*CHECK_ROLES)


def _case(hit: Hit, side: str) -> Case:
    return hit.a_case if side == "a" else hit.b_case


def _poc(actor: Actor, hit: Hit, side: str) -> bool:
    uid = hit.a_poc_user_id if side == "a" else hit.b_poc_user_id
    return actor.user_id is not None and uid == actor.user_id


def own_sides(actor: Actor, hit: Hit) -> tuple[str, ...]:
    """The sides the actor is on: point of contact, or may read that side's case."""
    if not actor.authenticated:
        return ()
    return tuple(s for s in SIDES
                 if _poc(actor, hit, s) or case_policy.access(actor, _case(hit, s)) >= READ)


def acting_sides(actor: Actor, hit: Hit) -> tuple[str, ...]:
    """The sides the actor may act for: point of contact, or may contribute to the case."""
    if not actor.authenticated:
        return ()
    return tuple(s for s in SIDES
                 if _poc(actor, hit, s) or case_policy.access(actor, _case(hit, s)) >= WRITE)


def can_view(actor: Actor, hit: Hit) -> bool:
    return is_coordinator(actor) or bool(own_sides(actor, hit))


def can_act(actor: Actor, hit: Hit) -> bool:
    return is_coordinator(actor) or bool(acting_sides(actor, hit))


def visible_hits(query: Select, actor: Actor) -> Select:
    """Narrow a query over Hit to the hits the actor may see; deny by default."""
    if not actor.authenticated:
        return query.where(false())
    if is_coordinator(actor):
        return query
    cases = case_policy.visible_cases(select(Case.id), actor)
    return query.where(or_(Hit.a_case_id.in_(cases), Hit.b_case_id.in_(cases),
                           Hit.a_poc_user_id == actor.user_id,
                           Hit.b_poc_user_id == actor.user_id))
