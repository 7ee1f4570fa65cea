"""deconfliction: the cross-agency target index, hits and their workflow, and the
in-app notifications behind the nav badge (DESIGN.md; issue 5).

Importing the package puts its tables in the metadata (create_app imports it);
`init_app` checks the blind-index key, registers the pages (/deconfliction), the
JSON API (/api/v1/deconfliction/..., /api/v1/notifications), the `flask
deconfliction` commands and the daily purge of expired registrations.

Operations (event deconfliction, operations.py and geo.py) make hits of kind
"operation" in the same workflow and notify through the same `Notification` and
the mail outbox (service._notify, mail.queue in the hits' transaction). Survivor
alerts can do the same with a new notification `kind`.
"""
from __future__ import annotations

from flask import Flask

from taskforce.deconfliction import models  # noqa: F401  (tables in the metadata)

PURGE_EVERY_SECONDS = 24 * 3600.0
OPERATION_PURGE_EVERY_SECONDS = 3600.0


def init_app(app: Flask) -> None:
    from taskforce import jobs
    from taskforce.deconfliction import api, blind, cli, service, tasks, views  # noqa: F401

    blind.keyring(app)  # refuse to start without the key where it is required
    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    app.cli.add_command(cli.deconfliction_cli)
    jobs.schedule(app, "deconfliction-purge-expired", {
        "task": tasks.purge_expired_registrations.name, "schedule": PURGE_EVERY_SECONDS})
    jobs.schedule(app, "deconfliction-purge-operations", {
        "task": tasks.purge_operations.name, "schedule": OPERATION_PURGE_EVERY_SECONDS})
