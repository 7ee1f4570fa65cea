"""Test helpers for cases: actors, cases made through the real service, API callers.

Call inside an app context (the `app` fixture pushes one).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from flask import Flask

from taskforce.accounts import service as accounts
from taskforce.accounts.models import User
from taskforce.accounts.permissions import Actor
from taskforce.investigations import service
from tests.factories import csrf_from, login, make_agency, make_user

_serial = itertools.count(1)


def ensure_registered(app: Flask) -> None:
    """Register the investigations blueprints if create_app has not (yet) done it."""
    if "investigations" not in app.blueprints:
        from taskforce import investigations

        investigations.init_app(app)


def actor_for(user: User) -> Actor:
    return Actor.for_user(user)


def person(*, agency=None, roles=("investigator",)) -> tuple[User, Actor]:
    user, _, _ = make_user(agency=agency, roles=list(roles))
    return user, actor_for(user)


def make_case(actor: Actor, *, title: str | None = None, offences=("sex_trafficking",),
              summary: str = "") -> int:
    case = service.open_case(actor=actor, title=title or f"Operation {next(_serial)}",
                             offences=list(offences), summary=summary)
    return case.id


@dataclass
class ApiCaller:
    """JSON calls as one user, with a write-scoped API token (no cookie, no CSRF)."""

    client: object
    token: str

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}

    def get(self, url: str, **kw):
        return self.client.get(url, headers=self._headers(), **kw)

    def post(self, url: str, json=None, **kw):
        return self.client.post(url, json=json if json is not None else {},
                                headers=self._headers(), **kw)

    def delete(self, url: str, **kw):
        return self.client.delete(url, headers=self._headers(), **kw)

    def open(self, url: str, method: str, json=None):
        if method == "GET":
            return self.get(url)
        return self.client.open(url, method=method, json=json if json is not None else {},
                                headers=self._headers())


def api_caller(app: Flask, user: User) -> ApiCaller:
    _, raw = accounts.create_token(actor=actor_for(user), name="tests", scope="write",
                                   expires_in_days=1)
    return ApiCaller(client=app.test_client(), token=raw)


@dataclass
class Browser:
    """A signed-in browser session: pages, and forms posted with the page's CSRF token."""

    client: object
    _token: str | None = None

    def get(self, url: str, **kw):
        return self.client.get(url, headers={"Accept": "text/html"}, **kw)

    def csrf(self) -> str:
        if self._token is None:
            self._token = csrf_from(self.client.get("/cases").data)
        return self._token

    def post(self, url: str, data: dict | None = None, **kw):
        return self.client.post(url, data={**(data or {}), "csrf_token": self.csrf()},
                                headers={"Accept": "text/html"}, **kw)


def browser(app: Flask, user_roles=("investigator",), agency=None) -> tuple[Browser, User]:
    user, password, secret = make_user(agency=agency or make_agency(), roles=list(user_roles))
    client = app.test_client()
    login(client, user.username, password, secret)
    return Browser(client=client), user
