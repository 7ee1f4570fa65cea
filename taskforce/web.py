"""Cross-cutting web concerns: CSRF enforcement, security headers, the shell pages."""
from __future__ import annotations

from flask import Blueprint, Flask, g, render_template, request

from taskforce.accounts.permissions import current_actor, signed_in
from taskforce.extensions import csrf

bp = Blueprint("web", __name__)

NAV = [  # (label, endpoint, roles that see it; empty = everyone signed in)
    ("Dashboard", "web.dashboard", ()),
    ("Cases", "investigations.cases", ()),
    ("Deconfliction", "deconfliction.hits", ()),
    ("Operations", "deconfliction.operations_list", ()),
    ("Coordinator", "deconfliction.dashboard", ("coordinator",)),
    ("Survivor alerts", "victims.alerts", ("victim_specialist", "investigator")),
    ("Hand-overs", "evidence.transfers", ()),
    ("Packages", "evidence.my_packages", ("prosecutor", "investigator")),
    ("Integrity alerts", "evidence.integrity_alerts", ("investigator", "supervisor")),
    ("Agencies", "accounts.agencies", ("admin",)),
    ("Users", "accounts.users", ("admin", "supervisor")),
    ("Audit", "audit.review", ("admin", "supervisor")),
    ("API tokens", "accounts.tokens", ()),
    ("API docs", "web.api_docs", ()),
]

ROLE_HOME = {
    "investigator": "Your cases, leads and tasks will appear here.",
    "analyst": "Network analysis of the cases you support.",
    "prosecutor": "Evidence packages shared with you, and when your access ends.",
    "coordinator": "Open deconfliction hits and operations in the next 72 hours.",
    "victim_specialist": "Survivor alerts on the cases of your agency.",
    "supervisor": "Your agency's users, lockouts and audit trail.",
    "admin": "Agencies, users, roles and the audit trail.",
}


def check_csrf() -> None:
    """Every cookie-authenticated state change carries a CSRF token.

    Bearer-token API calls carry no cookie, so a forged cross-site request
    cannot use them; they are exempt.
    """
    if request.method in {"GET", "HEAD", "OPTIONS", "TRACE"}:
        return
    if request.endpoint in (None, "static"):
        return
    if g.get("auth_via_token"):
        return
    csrf.protect()


def security_headers(resp):
    from flask import current_app

    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'",
    )
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if request.endpoint not in ("static",):
        resp.headers.setdefault("Cache-Control", "no-store")
    if current_app.config.get("TLS"):
        resp.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return resp


@bp.get("/")
@signed_in
def dashboard():
    actor = current_actor()
    notes = [ROLE_HOME[r] for r in sorted(actor.roles) if r in ROLE_HOME]
    return render_template("dashboard.html", notes=notes)


@bp.get("/api/docs")
@signed_in
def api_docs():
    return render_template("api_docs.html")


def nav_for(actor) -> list[tuple[str, str]]:
    return [(label, ep) for label, ep, roles in NAV if not roles or actor.has_role(*roles)]


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.after_request(security_headers)

    @app.context_processor
    def _inject():
        actor = current_actor()
        return {"actor": actor, "nav": nav_for(actor) if actor.authenticated else []}
