"""Shared fixtures: app, client, runner.

Each test gets a database of its own: a fresh SQLite file, or, for the
integration tests, also a fresh database on the real PostgreSQL (the whole
integration set runs on both). Schema comes from the models; the migration
test proves `flask db upgrade` yields the same schema.
"""
from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from taskforce import create_app
from taskforce.extensions import db

pytest_plugins = ["tests.plugins.services"]


def pytest_generate_tests(metafunc):
    if "db_backend" in metafunc.fixturenames:
        integration = metafunc.definition.get_closest_marker("integration") is not None
        backends = ["sqlite", "postgresql"] if integration else ["sqlite"]
        if metafunc.definition.get_closest_marker("postgresql_only") is not None:
            backends = ["postgresql"]  # e.g. a race that needs concurrent writers
        metafunc.parametrize("db_backend", backends)


@pytest.fixture()
def database_url(request, db_backend, tmp_path):
    if db_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    server = request.getfixturevalue("postgres_service")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.engine.make_url(server.url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture()
def app_environ(tmp_path, database_url):
    """The environment a test app is built from; tests add service URLs to it."""
    return {
        "TASKFORCE_ENV": "test",
        "TASKFORCE_INSTANCE": str(tmp_path / "instance"),
        "SECRET_KEY": "test-only-secret-key-not-for-production",
        "DATABASE_URL": database_url,
    }


class FreshContextClient(FlaskClient):
    """Each request gets an app context of its own, as under a real server: a
    fresh `g` and database session, not the ones the test body holds."""

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture()
def app(app_environ):
    app = create_app(environ=app_environ)
    app.test_client_class = FreshContextClient
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


@pytest.fixture()
def clean_graph(app):
    """Neo4j is shared by the whole session: a test asking for this starts (and ends)
    with an empty graph. The module must put neo4j_service.env() in app_environ."""
    from taskforce.graph import client, projection
    from tests.factories_graph import ensure_graph_registered

    ensure_graph_registered(app)
    projection.ensure_schema()
    projection.clear()
    yield
    projection.clear()
    client.close(app)
