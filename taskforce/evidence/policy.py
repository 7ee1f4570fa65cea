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
