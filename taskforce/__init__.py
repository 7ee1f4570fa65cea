"""taskforce: multi-agency human-trafficking task force.

create_app() wires everything; nothing runs (or is imported) at import time, so
a standalone tool of the package (the offline verifier) needs neither Flask nor the app.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apiflask import APIFlask


def create_app(overrides: Mapping[str, Any] | None = None,
               environ: Mapping[str, str] | None = None) -> APIFlask:
    from apiflask import APIFlask
    from flask import g

    import config

    instance = (environ or os.environ).get("TASKFORCE_INSTANCE") or None
    app = APIFlask(
        __name__, title="taskforce API", version="1",
        spec_path="/api/openapi.json", docs_path=None,  # our own docs page: no inline script
        json_errors=False, instance_path=instance, instance_relative_config=False,
    )
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.update(config.load(environ, instance_path=app.instance_path))
    if overrides:
        app.config.update(overrides)
    if app.config["TRUSTED_PROXIES"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)
    app.config["SERVERS"] = [{"url": "/"}]
    app.config["SECURITY_SCHEMES"] = {
        "BearerAuth": {"type": "http", "scheme": "bearer"},
        "SessionCookie": {"type": "apiKey", "in": "cookie", "name": "session"},
    }

    from taskforce import cli, errors, jobs, mail, web
    from taskforce.extensions import csrf, db, limiter, login_manager, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    login_manager.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    errors.init_app(app)
    jobs.init_app(app)

    # Order matters: who is acting, then may they, then CSRF; audit after.
    from taskforce import (
        accounts,
        audit,
        deconfliction,
        evidence,
        graph,
        health,
        investigations,
        victims,
    )
    from taskforce.accounts import permissions

    @app.before_request
    def _gate():
        g.actor = accounts.load_actor()
        permissions.check_request()
        web.check_csrf()

    web.init_app(app)
    accounts.init_app(app)
    audit.init_app(app)
    investigations.init_app(app)
    graph.init_app(app)
    evidence.init_app(app)
    deconfliction.init_app(app)
    victims.init_app(app)
    mail.init_app(app)
    health.init_app(app)
    cli.init_app(app)
    return app
