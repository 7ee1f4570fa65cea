"""Who sees which survivor alert, who acts on it, and who sees the survivor's name.

- An alert is addressed to one agency: its active victim specialists see it and act
  on it (acknowledge, record follow-up). The lead investigator of the alert's case
  sees the lead agency's copy (read only).
- The survivor's name: only where the survivor is in the alert's case, and only to
  the case lead, or to a victim specialist of the case's agency or one who may see
  survivors in that case (graph.policy.may_see_survivor: on the team or of a partner
  agency). Everyone else, e.g. the specialist of an agency whose case is only one
  link away, sees the pseudonym.
"""
from __future__ import annotations

from sqlalchemy import Select, and_, false, or_, select

from taskforce.accounts.permissions import Actor
from taskforce.investigations.models import Case
from taskforce.victims.models import SurvivorAlert

SPECIALIST = "victim_specialist"


def is_specialist_of(actor: Actor, agency_id: int | None) -> bool:
    return (actor.authenticated and actor.has_role(SPECIALIST)
            and actor.agency_id is not None and actor.agency_id == agency_id)


def _leads(actor: Actor, case: Case | None) -> bool:
    return case is not None and actor.authenticated and case.lead_investigator_id == actor.user_id


def visible_alerts(query: Select, actor: Actor) -> Select:
    """Narrow a query over SurvivorAlert to those the actor may see; deny by default."""
    if not actor.authenticated:
        return query.where(false())
    reach = [SurvivorAlert.case_id.in_(
        select(Case.id).where(Case.lead_investigator_id == actor.user_id,
                              Case.agency_id == SurvivorAlert.agency_id))]
    if actor.has_role(SPECIALIST) and actor.agency_id is not None:
        reach.append(SurvivorAlert.agency_id == actor.agency_id)
    return query.where(or_(*reach))


def open_alerts(query: Select, actor: Actor) -> Select:
    """The badge's count: new alerts addressed to the specialist's own agency."""
    if not (actor.authenticated and actor.has_role(SPECIALIST) and actor.agency_id):
        return query.where(false())
    return query.where(and_(SurvivorAlert.agency_id == actor.agency_id,
                            SurvivorAlert.status == "new"))


def may_view(actor: Actor, alert: SurvivorAlert, case: Case | None) -> bool:
    if is_specialist_of(actor, alert.agency_id):
        return True
    return _leads(actor, case) and case.agency_id == alert.agency_id


def may_act(actor: Actor, alert: SurvivorAlert) -> bool:
    """Acknowledge and record follow-up: the alerted agency's victim specialists only."""
    return is_specialist_of(actor, alert.agency_id)


def reveals_name(actor: Actor, alert: SurvivorAlert, case: Case | None,
                 survivor_in_case: bool) -> bool:
    if case is None or not survivor_in_case or not may_view(actor, alert, case):
        return False
    if _leads(actor, case):
        return True
    if not actor.has_role(SPECIALIST):
        return False
    if actor.agency_id == case.agency_id:
        return True
    from taskforce.graph import policy as graph_policy

    return graph_policy.may_see_survivor(actor, case)
