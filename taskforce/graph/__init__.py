"""graph: entities, identifiers and links (system of record), their projection to
Neo4j through a transactional outbox, and the pages and API for them.

Importing the package puts its tables in the metadata (create_app imports it);
`init_app` registers the pages (/cases/<id>/network), the JSON API
(/api/v1/...entities, ...links), the links' timeline source (service.py), the
`flask graph` commands and the periodic outbox drain.
"""
from __future__ import annotations

from flask import Flask

from taskforce.graph import models  # noqa: F401  (tables in the metadata)

DRAIN_EVERY_SECONDS = 30.0


def init_app(app: Flask) -> None:
    from taskforce import jobs
    from taskforce.graph import api, cli, service, tasks, views  # noqa: F401  (task, timeline)

    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    app.cli.add_command(cli.graph_cli)
    jobs.schedule(app, "graph-drain-outbox", {"task": tasks.drain_outbox.name,
                                               "schedule": DRAIN_EVERY_SECONDS})
