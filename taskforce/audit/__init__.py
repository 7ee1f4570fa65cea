"""Audit: append-only, hash-chained trail of every read and write."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from taskforce.audit import api, cli, hooks, models, views  # noqa: F401  (models: the table)

    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    app.cli.add_command(cli.audit_cli)
    hooks.init_app(app)
