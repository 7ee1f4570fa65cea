"""investigations: cases, case team and partner agencies, leads, tasks, notes, timeline.

Importing the package puts its tables in the metadata (create_app imports it);
`init_app` registers the pages (/cases) and the JSON API (/api/v1/cases).
"""
from __future__ import annotations

from flask import Flask

from taskforce.investigations import models  # noqa: F401  (tables in the metadata)


def init_app(app: Flask) -> None:
    from taskforce.investigations import api, views

    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
