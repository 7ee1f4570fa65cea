"""The request-level audit record: every request to a protected endpoint leaves one.

A service that audits what it did (`record`) sets a flag on `g`; then a
successful request needs nothing more. Otherwise, and always when the answer
is an error or a refusal, this hook writes `request.<endpoint>` in a
transaction of its own, so refused attempts are kept although the error
handler rolled their transaction back.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, current_app, g, request, request_started

from taskforce.accounts.permissions import current_actor, rule_for
from taskforce.audit import service
from taskforce.extensions import db

# The badge poll returns only the caller's own unread count, every few seconds:
# auditing it would flood the trail (and take the chain lock) for nothing protected.
NOT_AUDITED_ENDPOINTS = {"static", "deconfliction_api.notifications"}


def init_app(app: Flask) -> None:
    # A signal, not before_request: it fires before any before_request hook,
    # so the flag is reset even when the permission check refuses the request.
    request_started.connect(_reset_flag, app)
    app.after_request(audit_request)


def _reset_flag(sender: Flask, **extra: Any) -> None:
    g.audit_recorded = False  # g can outlive a request (tests, nested app contexts)


def audit_request(response: Response) -> Response:
    endpoint = request.endpoint
    if endpoint is None or endpoint in NOT_AUDITED_ENDPOINTS:
        return response  # 404/405 match nothing protected
    # The same lookup check_request made (it also leaves it on g.permission_rule);
    # asking again is one dict lookup and cannot be stale.
    rule = rule_for(endpoint)
    if rule is not None and rule.public:
        return response
    actor = current_actor()
    status = response.status_code
    # A refused page request answers 302 to the sign-in page, so the status alone won't say.
    denied = status in (401, 403) or rule is None or not rule.allows(actor)
    if g.get("audit_recorded") and status < 400 and not denied:
        return response

    outcome = ("denied" if denied else "error" if status >= 500
               else "failed" if status >= 400 else "success")
    object_type, object_id, case_id = object_from(request.view_args or {})
    try:
        if outcome != "success":
            db.session.rollback()  # an error answer never carries a write; frees the chain lock
        service.record_request(
            actor=dataclasses.replace(actor, ip=client_ip(), user_agent=request.user_agent.string),
            endpoint=endpoint, outcome=outcome, status_code=status, object_type=object_type,
            object_id=object_id, case_id=case_id,
            details={"method": request.method, "path": request.path[:300]},
        )
    except Exception:
        current_app.logger.exception("audit: could not record %s %s", request.method, request.path)
        if outcome == "success":
            # Fail closed: protected data that cannot be audited is not handed out.
            from taskforce.errors import respond

            return current_app.make_response(respond(
                503, "This request could not be written to the audit trail; try again."))
    return response


def object_from(view_args: Mapping[str, Any]) -> tuple[str | None, str | None, int | None]:
    """(object_type, object_id, case_id) from the URL: the last `<thing>_id` is the object."""
    object_type = object_id = None
    case_id = None
    for name, value in view_args.items():
        if name.endswith("_id") and len(name) > 3:
            object_type, object_id = name[:-3], str(value)
            if name == "case_id":
                case_id = _as_int(value)
    return object_type, object_id, case_id


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def client_ip() -> str | None:
    """The caller's address. X-Forwarded-For only counts when TRUSTED_PROXIES > 0.

    With N trusted proxies in front of us, each appends the address it saw,
    so the client is the Nth entry from the right; anything further left was
    written by the client and proves nothing. (Same rule as werkzeug's
    ProxyFix, so the answer agrees with it when the app is wrapped in one.)
    """
    hops = int(current_app.config.get("TRUSTED_PROXIES") or 0)
    if hops > 0:
        forwarded = [part.strip() for part in
                     ",".join(request.headers.getlist("X-Forwarded-For")).split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.remote_addr
