"""The storage-location and label tests again, on a real PostgreSQL: moves append to
the custody chain under PostgreSQL's row lock, and the state check constraints hold
there. `database_url` gives each test a fresh PostgreSQL database (no SQLite twin)."""
from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from tests.unit.test_evidence_label import *  # the same tests, on PostgreSQL

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
