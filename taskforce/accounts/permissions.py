"""The one permission check.

Every endpoint declares who may call it with exactly one of the decorators
below. A before-request hook (`check_request`) looks the rule up for the
matched endpoint and denies by default: an endpoint without a rule answers 403
to everyone, and the permission-matrix test fails on it.

The per-request `Actor` (user, agency, roles, token scope) is built here once
and handed to services, which never read flask.request or current_user.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from flask import current_app, g, request

from taskforce.errors import Forbidden, Unauthorized

ROLES = (
    "admin", "supervisor", "coordinator", "investigator", "analyst", "prosecutor",
    "victim_specialist",
)

# Endpoints registered by libraries, not by us.
LIBRARY_PUBLIC = {"static", "openapi.spec"}

READ_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Rule:
    public: bool = False
    roles: frozenset[str] = frozenset()  # empty and not public: any signed-in user

    def allows(self, actor: Actor) -> bool:
        if self.public:
            return True
        if not actor.authenticated:
            return False
        return not self.roles or bool(self.roles & actor.roles)


@dataclass(frozen=True)
class Actor:
    """Who is acting: built once per request, or for a user id in a task."""

    user_id: int | None = None
    username: str | None = None
    agency_id: int | None = None
    roles: frozenset[str] = frozenset()
    token_id: int | None = None
    token_scope: str | None = None  # "read" or "write" when acting through an API token
    ip: str | None = None
    user_agent: str | None = None
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def authenticated(self) -> bool:
        return self.user_id is not None

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))

    @classmethod
    def anonymous(cls, ip: str | None = None, user_agent: str | None = None) -> Actor:
        return cls(ip=ip, user_agent=user_agent)

    @classmethod
    def for_user(cls, user, *, token=None, ip=None, user_agent=None) -> Actor:
        return cls(
            user_id=user.id, username=user.username, agency_id=user.agency_id,
            roles=frozenset(user.role_names), token_id=token.id if token else None,
            token_scope=token.scope if token else None, ip=ip, user_agent=user_agent,
        )

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        """For scheduled jobs and CLI commands that act on nobody's behalf."""
        return cls(username=name)


def _mark(view: Callable, rule: Rule) -> Callable:
    if hasattr(view, "_permission"):
        raise RuntimeError(f"{view.__name__} already has a permission rule")
    view._permission = rule
    return view


def public(view: Callable) -> Callable:
    """Anyone, signed in or not (login pages, health probes)."""
    return _mark(view, Rule(public=True))


def signed_in(view: Callable) -> Callable:
    """Any signed-in user with MFA done; objects are then checked by the service."""
    return _mark(view, Rule())


def requires(*roles: str) -> Callable[[Callable], Callable]:
    """Only users holding at least one of these roles."""
    unknown = set(roles) - set(ROLES)
    if not roles or unknown:
        raise ValueError(f"requires() needs known roles, got {roles!r}")

    def deco(view: Callable) -> Callable:
        return _mark(view, Rule(roles=frozenset(roles)))

    return deco


def rule_for(endpoint: str | None) -> Rule | None:
    if endpoint is None:
        return None
    if endpoint in LIBRARY_PUBLIC:
        return Rule(public=True)
    view = current_app.view_functions.get(endpoint)
    return getattr(view, "_permission", None)


def current_actor() -> Actor:
    return g.get("actor") or Actor.anonymous()


def check_request() -> None:
    """before_request: apply the endpoint's rule to g.actor; deny by default."""
    g.permission_rule = rule = rule_for(request.endpoint)
    if request.endpoint is None:  # 404/405: no endpoint, nothing protected
        return
    actor = current_actor()
    if rule is None:
        current_app.logger.error("endpoint %s has no permission rule: denied", request.endpoint)
        raise Forbidden("This page has no access rule and is closed to everyone.")
    if rule.public:
        return
    if not actor.authenticated:
        raise Unauthorized("Sign in to continue.")
    if actor.token_scope == "read" and request.method not in READ_METHODS:
        raise Forbidden("This API token is read-only.")
    if not rule.allows(actor):
        raise Forbidden("Your role does not allow this.")


def endpoint_rules(app) -> Iterable[tuple[str, Rule | None]]:
    """(endpoint, rule) for every endpoint in the URL map: used by the matrix test."""
    with app.app_context():
        for ep in sorted(app.view_functions):
            yield ep, rule_for(ep)
