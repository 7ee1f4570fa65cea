"""Who may read which audit events. Deny by default.

An admin reads the whole trail; a supervisor reads the events of people of
their own agency; nobody else reads any. Every audit query goes through
`visible_events`, so a new page or export cannot forget the rule.
"""
from __future__ import annotations

from sqlalchemy import Select, false

from taskforce.accounts.permissions import Actor
from taskforce.audit.models import AuditEvent

REVIEW_ROLES = ("admin", "supervisor")


def can_review(actor: Actor) -> bool:
    return actor.authenticated and actor.has_role(*REVIEW_ROLES)


def visible_events(query: Select, actor: Actor) -> Select:
    """Narrow a select over AuditEvent to what `actor` may read."""
    if not actor.authenticated:
        return query.where(false())
    if actor.has_role("admin"):
        return query
    if actor.has_role("supervisor") and actor.agency_id is not None:
        return query.where(AuditEvent.agency_id == actor.agency_id)
    return query.where(false())
