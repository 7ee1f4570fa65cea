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
from taskforce.deconfliction.models import Hit, Operation
from taskforce.investigations import policy as case_policy
from taskforce.investigations.models import Case
from taskforce.investigations.policy import READ, WRITE, Access

SIDES = ("a", "b")
CHECK_ROLES = ("investigator", "supervisor", "coordinator", "analyst")
OPERATION_ROLES = ("investigator", "supervisor", "coordinator")
COORDINATOR = "coordinator"
SUPERVISOR = "supervisor"


def is_coordinator(actor: Actor) -> bool:
    return actor.authenticated and actor.has_role(COORDINATOR)


def can_check(actor: Actor) -> bool:
    return actor.authenticated and actor.has_role(*CHECK_ROLES)


def _case(hit: Hit, side: str) -> Case | None:
    return hit.a_case if side == "a" else hit.b_case


def _operation(hit: Hit, side: str) -> Operation | None:
    return hit.a_operation if side == "a" else hit.b_operation


def _side_access(actor: Actor, hit: Hit, side: str) -> Access:
    """What the actor may do on one side: its case decides, and for an operation
    also the operation's own rule (operation_access), whichever gives more."""
    case = _case(hit, side)
    level = case_policy.access(actor, case) if case is not None else Access.NONE
    op = _operation(hit, side)
    if op is not None:
        level = max(level, operation_access(actor, op))
    return level


def _poc(actor: Actor, hit: Hit, side: str) -> bool:
    uid = hit.a_poc_user_id if side == "a" else hit.b_poc_user_id
    return actor.user_id is not None and uid == actor.user_id


def own_sides(actor: Actor, hit: Hit) -> tuple[str, ...]:
    """The sides the actor is on: point of contact, or may read that side's case."""
    if not actor.authenticated:
        return ()
    return tuple(s for s in SIDES if _poc(actor, hit, s) or _side_access(actor, hit, s) >= READ)


def acting_sides(actor: Actor, hit: Hit) -> tuple[str, ...]:
    """The sides the actor may act for: point of contact, or may contribute to the case."""
    if not actor.authenticated:
        return ()
    return tuple(s for s in SIDES if _poc(actor, hit, s) or _side_access(actor, hit, s) >= WRITE)


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
    ops = visible_operations(select(Operation.id), actor)
    return query.where(or_(Hit.a_case_id.in_(cases), Hit.b_case_id.in_(cases),
                           Hit.a_poc_user_id == actor.user_id,
                           Hit.b_poc_user_id == actor.user_id,
                           Hit.a_operation_id.in_(ops), Hit.b_operation_id.in_(ops)))


# --------------------------------------------------------------------------- operations
#
# An operation's place, case and name are for its own people only: whoever
# submitted it, its point of contact, the supervisors of its agency, and (when it
# belongs to a case) whoever may read that case. They may also change (cancel)
# it, except case readers who may only read. Coordinators see every upcoming
# operation on the dashboard map (place, kind, agency, window, point of contact:
# what deconflicting needs), never its address text, name or case. Nobody else
# learns it exists: 404.

def can_submit_operation(actor: Actor) -> bool:
    return actor.authenticated and actor.has_role(*OPERATION_ROLES)


def operation_access(actor: Actor, op: Operation) -> Access:
    if not actor.authenticated:
        return Access.NONE
    if actor.user_id in (op.created_by_id, op.poc_user_id):
        return WRITE
    if actor.agency_id == op.agency_id and actor.has_role(SUPERVISOR):
        return WRITE
    if op.case is not None:
        return min(case_policy.access(actor, op.case), WRITE)
    return Access.NONE


def visible_operations(query: Select, actor: Actor) -> Select:
    """Narrow a query over Operation to those the actor may open; deny by default."""
    if not actor.authenticated:
        return query.where(false())
    cases = case_policy.visible_cases(select(Case.id), actor)
    rules = [Operation.created_by_id == actor.user_id, Operation.poc_user_id == actor.user_id,
             Operation.case_id.in_(cases)]
    if actor.has_role(SUPERVISOR) and actor.agency_id is not None:
        rules.append(Operation.agency_id == actor.agency_id)
    return query.where(or_(*rules))
