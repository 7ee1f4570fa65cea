"""Who may do what to an evidence item, beyond reading its case.

Reaching an item at all is the case's rule (investigations.policy, through
`get_case_or_404`): an item of a case you may not read does not exist for
you. On top of that:

- adding evidence needs WRITE on the case (team member, or a partner agency
  granted contribute);
- transferring custody: the current custodian hands the item on, or
  someone who manages the case (its lead, lead investigator, or a supervisor
  of the lead agency) reassigns it; the receiver must be able to read the case;
- a verification may be run by anyone who may read the case, and by the
  system (the integrity sweep, the CLI).
"""
from __future__ import annotations

from taskforce.accounts.permissions import Actor
from taskforce.evidence.models import EvidenceItem
from taskforce.investigations.models import Case
from taskforce.investigations.policy import MANAGE, READ, Access


def is_system(actor: Actor) -> bool:
    """A scheduled job or a command acting on nobody's behalf (Actor.system)."""
    return actor.user_id is None and actor.username is not None


def can_transfer(actor: Actor, item: EvidenceItem, level: Access) -> bool:
    if level >= MANAGE:
        return True
    return level >= READ and item.custodian_id is not None and item.custodian_id == actor.user_id


def can_receive(level: Access) -> bool:
    return level >= READ


def can_authorise_disposal(actor: Actor, level: Access) -> bool:
    """Disposal is a supervisor's decision, on a case the supervisor manages."""
    return level >= MANAGE and actor.has_role("supervisor")


def can_set_legal_hold(actor: Actor, level: Access) -> bool:
    return level >= MANAGE and actor.has_role("supervisor")


def can_release_survivor(actor: Actor, case: Case) -> bool:
    """Releasing a survivor's identity into packages is the victim specialist's call."""
    from taskforce.graph.policy import may_see_survivor

    return actor.has_role("victim_specialist") and may_see_survivor(actor, case)


def can_build_package(actor: Actor, case: Case, level: Access) -> bool:
    """A prosecutor who may read the case, or the case lead (whoever manages the case)."""
    if level >= MANAGE:
        return True
    return level >= READ and actor.has_role("prosecutor")


def can_manage_packages(level: Access) -> bool:
    """Grant prosecutors access to a package, and download any package of the case."""
    return level >= MANAGE
