"""victims: survivor records, specialist assignment, services, certifications.

Built so far: survivor and minor alerts (issue 5). Importing the package puts its
tables in the metadata (create_app imports it); `init_app` registers the pages
(/victims/alerts), the JSON API (/api/v1/victims/alerts...), the background job,
and the session hooks that watch every commit for new case memberships and links
(hooks.py), so no graph code has to call in here.
"""
from __future__ import annotations

from flask import Flask

from taskforce.victims import models  # noqa: F401  (tables in the metadata)


def init_app(app: Flask) -> None:
    from taskforce import jobs
    from taskforce.victims import api, hooks, tasks, views

    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    hooks.install()
    jobs.schedule(app, tasks.SWEEP_ENTRY, tasks.beat_entry(app))  # refused fast paths retried
