"""Accounts: agencies, users, roles, login, MFA, API tokens.

`load_actor()` answers "who is acting?" once per request, from an
`Authorization: Bearer` API token or from the browser's session; the browser
session counts only while its server-side `UserSession` is live.
"""
from __future__ import annotations

from flask import Flask, flash, g, redirect, request, session, url_for
from flask_login import current_user, logout_user

from taskforce.accounts.permissions import Actor
from taskforce.extensions import db, login_manager

SESSION_KEY = "sid"  # the raw session id; the database keeps only its hash
PENDING_KEY = "login_pending"  # password checked, second factor still owed

# Endpoints a user who must replace a temporary password can still reach.
_WHILE_CHANGING_PASSWORD = {"accounts.change_password", "accounts.logout", "static"}

_ENDED = {
    "idle": "Your session ended after {idle} minutes without activity. Sign in again.",
    "too_old": "Your session reached its {hours}-hour limit. Sign in again.",
    "deactivated": "This account has been deactivated.",
    "password_changed": "Your password was changed in another session. Sign in again.",
    "sign_in_reset": "An administrator reset your sign-in. Sign in with the new password.",
}


def reset_session() -> None:
    """Empty the cookie session, and forget the CSRF token derived from it so a
    form rendered later in this request carries a token that matches."""
    session.clear()
    g.pop("csrf_token", None)


def _actor_for(user, *, token=None) -> Actor:
    actor = Actor.for_user(user, token=token, ip=request.remote_addr,
                           user_agent=request.user_agent.string)
    actor.extra.update(agency_name=user.agency.name if user.agency else None,
                       full_name=user.full_name,
                       must_change_password=bool(user.must_change_password))
    return actor


def load_actor() -> Actor:
    from taskforce.accounts import service
    from taskforce.errors import Unauthorized, wants_json

    ip, user_agent = request.remote_addr, request.user_agent.string
    # Decide afresh on every request, even where g outlives it (tests share one app context).
    g.auth_via_token = False
    g.pop("_login_user", None)  # Flask-Login's cached user
    g.pop("csrf_token", None)  # Flask-WTF's token, derived from this request's cookie
    g.actor = Actor.anonymous(ip=ip, user_agent=user_agent)  # who it is, should this raise
    header = request.headers.get("Authorization", "").strip()
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("Send the API token as 'Authorization: Bearer <token>'.")
        user, token = service.authenticate_token(raw=value.strip(), ip=ip, user_agent=user_agent)
        g.auth_via_token = True
        return _actor_for(user, token=token)

    if not current_user.is_authenticated:
        return Actor.anonymous(ip=ip, user_agent=user_agent)
    sid = session.get(SESSION_KEY)
    check = (service.resume_session(session_token=sid, user_id=current_user.id, ip=ip,
                                    user_agent=user_agent)
             if sid else service.SessionCheck(None, "unknown"))
    if check.user is None:
        logout_user()
        reset_session()
        message = _ENDED.get(check.ended_reason or "")
        if message and not wants_json():
            from flask import current_app

            cfg = current_app.config
            flash(message.format(idle=cfg["SESSION_IDLE_MINUTES"],
                                 hours=cfg.get("SESSION_MAX_HOURS", service.SESSION_MAX_HOURS)),
                  "info")
        return Actor.anonymous(ip=ip, user_agent=user_agent)
    return _actor_for(check.user)


def _load_user(user_id: str):
    from taskforce.accounts.models import User

    try:
        return db.session.get(User, int(user_id))
    except (TypeError, ValueError):
        return None


def _own_password_first():
    """After a temporary password, nothing but choosing one's own (CJIS 5.6.2.1)."""
    from taskforce.errors import Forbidden, wants_json

    actor = g.get("actor")
    if (actor is None or not actor.authenticated or g.get("auth_via_token")
            or not actor.extra.get("must_change_password")
            or request.endpoint in _WHILE_CHANGING_PASSWORD or request.endpoint is None):
        return None
    message = "Choose your own password before going on: the one you have was set for you."
    if wants_json():
        raise Forbidden(message)
    flash(message, "info")
    return redirect(url_for("accounts.change_password"))


def init_app(app: Flask) -> None:
    from taskforce.accounts import api, cli, views

    login_manager.user_loader(_load_user)
    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    app.cli.add_command(cli.accounts_cli)
    app.before_request(_own_password_first)  # after the request gate: g.actor is set
