"""Imports against the real services: the Neo4j projection after an import (on SQLite
and on PostgreSQL), and the import job run by the real Celery worker (Redis broker, its
own process and database) while the caller polls the run's status.
"""
from __future__ import annotations

import io
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from taskforce import create_app
from taskforce.extensions import db
from taskforce.graph import client, imports, outbox, projection
from taskforce.graph.models import ImportRun, Link
from tests.factories_graph import ensure_graph_registered, make_team, pending_outbox

pytestmark = pytest.mark.integration

A, B, C = "+13125550101", "+13125550102", "+13125550103"
CDR = ("caller,callee,start,duration,call_type\n"
       f"{A},{B},2024-03-01T10:00:00,60,voice\n"
       f"{A},{B},2024-03-05T09:00:00,30,voice\n"
       f"{B},{C},2024-03-02T11:00:00,12,voice\n"
       f"{A},{C},2024-03-03T12:00:00,0,sms\n"
       f"{A},nope,2024-03-03T12:00:00,0,sms\n").encode()


@pytest.fixture()
def app_environ(app_environ, neo4j_service):
    return {**app_environ, **neo4j_service.env()}


def test_an_import_is_projected_into_neo4j(app):
    ensure_graph_registered(app)
    projection.ensure_schema()
    projection.clear()
    try:
        team = make_team()
        started = imports.start_import(actor=team.lead[1], case_id=team.case_id,
                                       stream=io.BytesIO(CDR), kind="cdr", filename="c.csv")
        run = started.run
        assert run.status == "done" and run.rows_bad == 1
        outbox.drain()  # the in-process drain ran after the commit; this one finds nothing
        assert pending_outbox() == []
        rows = client.read(
            "MATCH (a:Entity)-[r]->(b:Entity) RETURN a.id AS a, b.id AS b, type(r) AS type, "
            "r.count AS count, r.first_seen AS first, r.last_seen AS last, r.cases AS cases")
        links = {lk.id: lk for lk in db.session.scalars(select(Link))}
        assert len(rows) == len(links) == 3
        by_pair = {(r["a"], r["b"], r["type"]): r for r in rows}
        ab = next(lk for lk in links.values() if lk.count == 2)
        row = by_pair[(outbox.entity_node_id(ab.source_id), outbox.entity_node_id(ab.target_id),
                       "CALLED")]
        assert row["count"] == 2 and row["cases"] == [team.case_id]
        assert row["first"].to_native() == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
        assert row["last"].to_native() == datetime(2024, 3, 5, 9, 0, tzinfo=UTC)
        assert sorted(r["type"] for r in rows) == ["CALLED", "CALLED", "TEXTED"]
        nodes = client.read("MATCH (n:Entity) RETURN n.kind AS kind, n.cases AS cases")
        assert len(nodes) == 3 and all(n["kind"] == "phone" and n["cases"] == [team.case_id]
                                       for n in nodes)
    finally:
        projection.clear()
        client.close(app)


def test_the_import_job_runs_in_the_real_celery_worker(celery_worker):
    """The web app queues the job on Redis; the worker (another process, the same
    database and evidence folder) runs it; the run's status shows it done."""
    app = create_app(environ=dict(celery_worker.environ))
    with app.app_context():
        assert not app.extensions["celery"].conf.task_always_eager
        db.create_all()
        ensure_graph_registered(app)
        team = make_team()
        started = imports.start_import(actor=team.lead[1], case_id=team.case_id,
                                       stream=io.BytesIO(CDR), kind="cdr", filename="c.csv")
        assert started.created
        run_id = started.run.id
        deadline = time.monotonic() + 60
        status = started.run.status
        while status not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)
            db.session.expire_all()
            status = db.session.get(ImportRun, run_id).status
        run = db.session.get(ImportRun, run_id)
        assert run.status == "done", run.error
        assert (run.rows_read, run.rows_loaded, run.rows_bad) == (5, 4, 1)
        links = db.session.scalars(select(Link).where(Link.case_id == team.case_id)).all()
        assert len(links) == 3
        assert {lk.provenance_ref for lk in links} == {f"import-{run_id}"}
        db.session.remove()
        db.engine.dispose()
