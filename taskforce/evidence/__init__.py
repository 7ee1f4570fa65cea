"""evidence: storage backends, streaming ingest, custody ledger, verification.

The package imports nothing at import time, so the offline verifier
(`taskforce-verify`, evidence/verify.py) runs without Flask or the app;
`init_app` puts the tables in the metadata and registers the pages (/cases/<id>/evidence, /evidence/<id>), the
JSON API (/api/v1/cases/<id>/evidence, /api/v1/evidence/<id>...), the
"evidence" timeline source (service.py), the background jobs and the
`flask evidence` commands. The store (local folder or S3) is built on first
use from the settings (storage.get_store).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

SWEEP_EVERY_SECONDS = 24 * 3600.0  # the integrity sweep re-hashes every stored object daily


def init_app(app: Flask) -> None:
    from taskforce import jobs
    from taskforce.evidence import api, cli, models, service, tasks, views  # noqa: F401  (tables, timeline, jobs)

    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    app.cli.add_command(cli.evidence_cli)
    jobs.schedule(app, "evidence-integrity-sweep", {"task": tasks.integrity_sweep.name,
                                                     "schedule": SWEEP_EVERY_SECONDS})
