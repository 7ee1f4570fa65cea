"""Test data made through the real services, and sign-in through the real forms.

Call inside an app context (the `app` fixture pushes one).
"""
from __future__ import annotations

import itertools
import re
import secrets
import time

import pyotp
from sqlalchemy import select

from taskforce.accounts import service
from taskforce.accounts.models import Agency, User
from taskforce.accounts.permissions import Actor
from taskforce.extensions import db

CONSOLE = Actor.system("tests")
_serial = itertools.count(1)


def make_agency(*, name: str | None = None, level: str = "local", ori: str | None = None,
                active: bool = True) -> Agency:
    n = next(_serial)
    return service.create_agency(
        actor=CONSOLE, name=name or f"Test Agency {n} Police Department", level=level,
        ori=ori or f"TX{n:07d}", active=active)


def make_user(*, agency: Agency | None = None, roles: list[str] | tuple[str, ...] = ("investigator",),
              password: str | None = None, mfa: bool = True, username: str | None = None
              ) -> tuple[User, str, str | None]:
    """A user who may sign in at once: (user, password, TOTP secret or None)."""
    agency = agency or make_agency()
    n = next(_serial)
    username = username or f"user{n}"
    password = password or f"correct horse {secrets.token_hex(6)} staple"
    user, _ = service.create_user(
        actor=CONSOLE, username=username, full_name=f"Test User {n}",
        email=f"{username}@example.gov", agency_id=agency.id, roles=list(roles),
        password=password)
    secret = service.enrol_for_console(actor=CONSOLE, user_id=user.id) if mfa else None
    return user, password, secret


def csrf_from(html: bytes | str) -> str:
    text = html.decode() if isinstance(html, bytes) else html
    match = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert match, "no CSRF token in the page"
    return match.group(1)


def post_form(client, url: str, data: dict, *, page: str | None = None, **kwargs):
    """POST a form the way a browser does: with the CSRF token of the page it is on."""
    token = csrf_from(client.get(page or url).data)
    return client.post(url, data={**data, "csrf_token": token}, **kwargs)


def fresh_code(username: str, secret: str) -> str:
    """A TOTP code the server has not seen yet: the current one, or the next step's
    (still inside the allowed drift) if the current one was already used."""
    totp = pyotp.TOTP(secret)
    step = totp.timecode(time.time())
    # Ask the database, not an object the test may hold from before the last sign-in.
    last = db.session.scalar(select(User.mfa_last_counter)
                             .where(User.username == username.strip().lower()))
    if last is not None and last >= step:
        step = last + 1
    return totp.generate_otp(step)


def login(client, username: str, password: str, totp_secret: str | None):
    """Sign in through /login and /login/mfa (or /mfa/enrol if not enrolled)."""
    resp = post_form(client, "/login", {"username": username, "password": password})
    assert resp.status_code == 302, f"password step refused: {resp.status_code}"
    location = resp.headers["Location"]
    if "/login/mfa" in location:
        assert totp_secret, "the account has MFA but no secret was given"
        resp = post_form(client, "/login/mfa", {"code": fresh_code(username, totp_secret)})
        assert resp.status_code == 302, f"second factor refused: {resp.status_code}"
    return resp
