"""The investigations service suite again, on a real PostgreSQL.

SQLite runs it as test_investigations_service; what differs on PostgreSQL and
is worth proving there: the case-number upsert under concurrent openers (row
lock under READ COMMITTED), the check constraints, and the list scope's
subqueries. `database_url` is overridden here so each test gets a fresh
PostgreSQL database (and only that: no SQLite duplicate).
"""
from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from tests.unit.test_investigations_service import *  # the same tests, on PostgreSQL

pytestmark = pytest.mark.integration


@pytest.fixture()
def database_url(request):
    server = request.getfixturevalue("postgres_service")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.engine.make_url(server.url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
