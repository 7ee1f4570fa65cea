"""Shared fixtures: app, client, runner, login.

Each test gets its own SQLite database file; schema comes from the models.
"""
from __future__ import annotations

import pytest

from taskforce import create_app
from taskforce.extensions import db


@pytest.fixture()
def app(tmp_path):
    environ = {
        "TASKFORCE_ENV": "test",
        "TASKFORCE_INSTANCE": str(tmp_path / "instance"),
        "SECRET_KEY": "test-only-secret-key-not-for-production",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'test.db'}",
    }
    app = create_app(environ=environ)
    with app.app_context():
        db.create_all()
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def runner(app):
    return app.test_cli_runner()
