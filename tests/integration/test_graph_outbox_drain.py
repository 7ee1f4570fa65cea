"""The bulk outbox drain against the real Neo4j (on SQLite and on PostgreSQL): on a
mixed outbox (creates, restatements, repeated rows for one object, an import, a
merge with a folded link, a delete) the drained graph is exactly the rebuilt one, in
one batch or in many; reading a batch costs the same few queries however many rows
it holds; and Neo4j failing in the middle of a drain loses nothing.
"""
from __future__ import annotations

import io

import pytest
from sqlalchemy import event, select

from taskforce.extensions import db
from taskforce.graph import client, imports, outbox, projection, service
from taskforce.graph.models import Entity, GraphOutbox, Link
from tests.factories_graph import (
    add_person,
    add_phone,
    closed_bolt_uri,
    make_team,
    pending_outbox,
    years_ago,
)
from tests.factories_investigations import make_case, person

pytestmark = pytest.mark.integration

CDR = (b"caller,callee,start,duration,call_type\n"
       b"+13125550301,+13125550302,2024-03-01T10:00:00,60,voice\n"
       b"+13125550301,+13125550302,2024-03-05T09:00:00,30,voice\n"
       b"+13125550302,+13125550101,2024-03-02T11:00:00,12,sms\n")


@pytest.fixture()
def app_environ(app_environ, neo4j_service):
    return {**app_environ, **neo4j_service.env()}


@pytest.fixture(autouse=True)
def _clean(clean_graph):
    """Every test here starts from an empty graph (tests/conftest.py)."""


@pytest.fixture()
def team(app):
    return make_team()


def _neo4j_down(app) -> str:
    """Neo4j unreachable (its address refuses connections): every drain, in-process
    or not, fails and the rows wait. Returns the real address."""
    real_uri = app.config["NEO4J_URI"]
    app.config["NEO4J_URI"] = closed_bolt_uri()
    client.close(app)
    return real_uri


def _neo4j_up(app, uri: str) -> None:
    app.config["NEO4J_URI"] = uri
    client.close(app)


def _mixed_outbox(app, team) -> dict[str, int]:
    """Part of a case drained into the graph, then, while Neo4j is down, every kind
    of change: new entities and links, repeated rows for one link and for one entity, a
    second case, a CDR import, a merge (the absorbed node goes, a link is folded
    away, others re-pointed) and a link deleted with its outbox row."""
    lead = team.lead[1]
    cid = team.case_id
    kw = {"actor": lead, "case_id": cid}
    a = add_person(lead, cid, "Jose Martinez", dob="1990-04-12", role="suspect")
    b = add_person(lead, cid, "José Martínez", dob="1990-04-12", role="victim")
    phone = add_phone(lead, cid, "(312) 555-0101")
    motel = service.add_entity(**kw, kind="location", label="Sunset Motel")
    service.add_link(**kw, source_id=a.id, target_id=phone.id, type="USES")
    service.add_link(**kw, source_id=b.id, target_id=phone.id, type="USES", count=3)
    service.add_link(**kw, source_id=b.id, target_id=motel.id, type="STAYED_AT")
    gone = service.add_link(**kw, source_id=a.id, target_id=motel.id, type="ASSOCIATED_WITH")
    assert pending_outbox() == []  # this much is in the graph already

    real_uri = _neo4j_down(app)
    girl = add_person(lead, cid, "Ana Ruiz", dob=years_ago(16), role="victim")
    burner = add_phone(lead, cid, "312-555-0177")
    service.add_link(**kw, source_id=girl.id, target_id=burner.id, type="USES")
    called = None
    for i, day in enumerate(("2024-02-03", "2024-01-01", "2024-03-09")):  # one link, 3 rows
        called = service.add_link(**kw, source_id=burner.id, target_id=phone.id, type="CALLED",
                                  first_seen=day, last_seen=day, count=i + 2)
    _, other = person(agency=team.other_agency)
    other_case = make_case(other, title="Operation Wren")
    add_phone(other, other_case, "+13125550101", label="Tip line caller")
    started = imports.start_import(actor=lead, case_id=cid, stream=io.BytesIO(CDR),
                                   kind="cdr", filename="cdr.csv")
    assert started.run.status == "done", started.run.error
    service.merge_entities(**kw, keep_id=a.id, absorb_id=b.id)
    # a link removed from the database, its outbox row written with it
    db.session.delete(db.session.get(Link, gone.id))
    outbox.enqueue("delete_link", gone.id)
    db.session.commit()
    _neo4j_up(app, real_uri)
    return {"kept": a.id, "absorbed": b.id, "girl": girl.id, "burner": burner.id,
            "phone": phone.id, "called": called.id, "gone": gone.id}


def _rebuilt() -> dict:
    assert outbox.rebuild().entities > 0
    return projection.snapshot()


@pytest.mark.parametrize("chunk", [outbox.READ_CHUNK, 2])
def test_the_bulk_rows_are_the_rows_rebuild_writes(app, team, monkeypatch, chunk):
    """Read in bulk (the drain) or from the ORM objects (rebuild): the same nodes and
    relationships, survivors, shields, minors and several cases included; also when
    the ids are read a few at a time."""
    ids = _mixed_outbox(app, team)
    monkeypatch.setattr(outbox, "READ_CHUNK", chunk)
    entities = list(db.session.scalars(select(Entity)))
    links = list(db.session.scalars(select(Link)))
    live = [e for e in entities if e.merged_into_id is None]
    expected_nodes = {e.id: row for e, row in zip(live, outbox.entity_rows(live), strict=True)}
    expected_links = {lk.id: outbox.link_row(lk) for lk in links}
    assert outbox.entity_rows_by_id([e.id for e in entities]) == expected_nodes
    assert outbox.link_rows_by_id([lk.id for lk in links] + [ids["gone"]]) == expected_links
    assert ids["absorbed"] not in expected_nodes  # merged away: not a node
    burner = expected_nodes[ids["burner"]]
    girl = db.session.get(Entity, ids["girl"])
    assert burner["case_labels"] == [f"{girl.pseudonym}'s phone"]  # shielded
    assert expected_nodes[ids["girl"]]["minor"] is True
    assert len(expected_nodes[ids["phone"]]["cases"]) == 2


@pytest.mark.parametrize("batch", [None, 3])
def test_a_mixed_outbox_drains_to_the_rebuilt_graph(app, team, batch):
    ids = _mixed_outbox(app, team)
    waiting = pending_outbox()
    named = [(r.op, r.object_id) for r in waiting]
    # the outbox really is mixed: repeats of one object, deletes, both kinds
    assert named.count(("upsert_link", ids["called"])) == 3
    assert named.count(("upsert_entity", ids["burner"])) >= 2  # made, then shielded
    assert ("delete_link", ids["gone"]) in named
    assert ("upsert_entity", ids["absorbed"]) in named or \
        ("delete_entity", ids["absorbed"]) in named

    result = outbox.drain(batch=batch)
    assert result.ok and result.processed == len(waiting) and pending_outbox() == []
    writes = result.entities + result.links + result.deleted
    if batch is None:  # one batch: one write per object however many rows named it
        objects = {(op.split("_")[1], oid) for op, oid in named}
        assert result.batches == 1 and writes == len(objects) < len(waiting)
    else:  # once per batch naming it
        assert result.batches == -(-len(waiting) // batch) and writes <= len(waiting)
    drained = projection.snapshot()
    node_ids = {n["id"] for n in drained["nodes"]}
    assert outbox.entity_node_id(ids["absorbed"]) not in node_ids
    assert outbox.link_rel_id(ids["gone"]) not in {lk["id"] for lk in drained["links"]}
    called = next(lk for lk in drained["links"] if lk["id"] == outbox.link_rel_id(ids["called"]))
    assert called["props"]["count"] == 4 and called["props"]["first_seen"].startswith("2024-01-01")
    assert drained == _rebuilt()
    # replaying every row ever written, in one batch: nothing changes
    db.session.execute(GraphOutbox.__table__.update().values(processed_at=None))
    db.session.commit()
    assert outbox.drain().ok
    assert projection.snapshot() == drained


def test_reading_a_batch_costs_a_few_queries_whatever_its_size(app, team):
    """No query per row (the ORM's eager loads were one per object and per endpoint)."""
    _mixed_outbox(app, team)
    lead = team.lead[1]
    real_uri = _neo4j_down(app)  # the rows wait
    for i in range(40):
        p = add_phone(lead, team.case_id, f"312-555-02{i:02d}")
        service.add_link(actor=lead, case_id=team.case_id, source_id=p.id,
                         target_id=p.id - 1, type="CALLED")
    _neo4j_up(app, real_uri)
    waiting = len(pending_outbox())
    assert waiting >= 100
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        work = outbox._read_batch(outbox.DRAIN_BATCH)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert work is not None and len(work.ids) == waiting
    # the outbox rows, entities, memberships, shields (3), links: not one per row
    assert len(statements) <= 8, statements


def test_neo4j_failing_mid_drain_loses_nothing(app, team, monkeypatch):
    """The graph engine goes away after the first batch was written (the rest of the
    drain meets a refused connection): what was written is marked, the rest waits
    with its error, and once Neo4j is back the graph is the rebuilt one."""
    _mixed_outbox(app, team)
    attempts = {r.id: r.attempts for r in pending_outbox()}  # tried while Neo4j was down
    waiting = sorted(attempts)
    batch = 4
    real_project = outbox._project
    calls = []
    real_uri = ""

    def project_then_go_down(work):
        nonlocal real_uri
        calls.append(len(work.ids))
        if len(calls) == 2:  # Neo4j down from the second batch on
            real_uri = _neo4j_down(app)
        return real_project(work)

    monkeypatch.setattr(outbox, "_project", project_then_go_down)
    result = outbox.drain(batch=batch)
    assert not result.ok and result.error
    assert (result.batches, result.processed, result.failed) == (1, batch, batch)
    left = pending_outbox()
    assert [r.id for r in left] == waiting[batch:]  # only the written batch was marked
    failed = [r for r in left if r.attempts > attempts[r.id]]
    assert [r.id for r in failed] == waiting[batch:2 * batch]  # the batch that met the failure
    assert all(r.attempts == attempts[r.id] + 1 and result.error in r.last_error
               for r in failed)

    monkeypatch.setattr(outbox, "_project", real_project)
    _neo4j_up(app, real_uri)  # Neo4j back
    again = outbox.drain()
    assert again.ok and again.processed == len(waiting) - batch
    assert pending_outbox() == []
    drained = projection.snapshot()
    assert drained == _rebuilt()
