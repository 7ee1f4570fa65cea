"""Who may do what to which account. The service calls these; a False is a Forbidden.

Admins run the whole task force. A supervisor sees the users of their own
agency and may unlock them, nothing more. A console actor (Actor.system, used
by `flask accounts ...`) is trusted: whoever has a shell on the server already
holds the database.
"""
from __future__ import annotations

from sqlalchemy import Select, false

from taskforce.accounts.models import User
from taskforce.accounts.permissions import Actor


def is_console(actor: Actor) -> bool:
    return actor.user_id is None and actor.username is not None


def can_manage_agencies(actor: Actor) -> bool:
    return is_console(actor) or actor.has_role("admin")


def can_administer_users(actor: Actor) -> bool:
    """Create accounts, change roles, deactivate, reset sign-in."""
    return is_console(actor) or actor.has_role("admin")


def can_see_user(actor: Actor, user: User) -> bool:
    if can_administer_users(actor) or actor.user_id == user.id:
        return True
    return actor.has_role("supervisor") and actor.agency_id == user.agency_id


def can_unlock(actor: Actor, user: User) -> bool:
    if can_administer_users(actor):
        return True
    return actor.has_role("supervisor") and actor.agency_id == user.agency_id


def visible_users(query: Select, actor: Actor) -> Select:
    """The one scope for user lists: deny by default."""
    if can_administer_users(actor):
        return query
    if actor.has_role("supervisor") and actor.agency_id is not None:
        return query.where(User.agency_id == actor.agency_id)
    if actor.user_id is not None:
        return query.where(User.id == actor.user_id)
    return query.where(false())
