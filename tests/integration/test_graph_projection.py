"""The Neo4j projection against the real Neo4j (and, like every integration test,
on SQLite and on PostgreSQL): the outbox drain projects entities and links,
draining twice changes nothing, Neo4j down then up loses nothing, a rebuild gives
the graph the incremental drain built, and the graph holds no survivor identity.
"""
from __future__ import annotations

import re
from datetime import date

import pytest
from sqlalchemy import select, update

from taskforce.extensions import db
from taskforce.graph import client, outbox, projection, service
from taskforce.graph.models import Entity, GraphOutbox, Link
from taskforce.graph.synthetic import generate
from tests.factories_graph import (
    add_person,
    add_phone,
    closed_bolt_uri,
    load_synthetic,
    make_team,
    pending_outbox,
)
from tests.factories_investigations import api_caller

pytestmark = pytest.mark.integration


@pytest.fixture()
def app_environ(app_environ, neo4j_service):
    return {**app_environ, **neo4j_service.env()}


@pytest.fixture(autouse=True)
def _clean(clean_graph):
    """Every test here starts from an empty graph (tests/conftest.py)."""


@pytest.fixture()
def team(app):
    return make_team()


def _dob(years: int) -> str:
    today = date.today()
    return date(today.year - years, today.month, min(today.day, 28)).isoformat()


def _network(seed: int = 3):
    return generate(seed=seed, controllers=2, victims_per_controller=2, phones_per_controller=2,
                    buyers=5, ads_per_phone=1)


def _node(node_id: str) -> dict | None:
    rows = client.read("MATCH (n:Entity {id: $id}) RETURN labels(n) AS labels, "
                       "properties(n) AS props", id=node_id)
    return rows[0] if rows else None


def _count_nodes() -> int:
    return client.read("MATCH (n:Entity) RETURN count(n) AS n")[0]["n"]


def _count_links() -> int:
    return client.read("MATCH (:Entity)-[r]->(:Entity) RETURN count(r) AS n")[0]["n"]


def test_the_drain_projects_entities_and_links(app, team):
    lead = team.lead[1]
    a = add_phone(lead, team.case_id, "(312) 555-0101")
    b = add_phone(lead, team.case_id, "312-555-0102")
    survivor = add_person(lead, team.case_id, "Maria Lopez", role="victim", dob=_dob(15))
    link = service.add_link(actor=lead, case_id=team.case_id, source_id=a.id, target_id=b.id,
                            type="CALLED", first_seen="2025-01-02", last_seen="2025-01-09",
                            count=7, provenance_kind="import", provenance_ref="cdr-1")
    service.add_link(actor=lead, case_id=team.case_id, source_id=survivor.id,
                     target_id=a.id, type="USES")
    # each write drained in-process (the embedded default) as soon as it committed
    assert pending_outbox() == []
    phone = _node(f"ent-{b.id}")
    assert sorted(phone["labels"]) == ["Entity", "Phone"]
    # labels per case (need to know); `label` is only the kind
    assert phone["props"] == {"id": f"ent-{b.id}", "kind": "phone", "label": "Phone",
                              "cases": [team.case_id], "case_labels": ["+1 312-555-0102"],
                              "survivor": False, "minor": False}
    # the phone the survivor uses is shielded: labelled by her pseudonym, not its number
    used = _node(f"ent-{a.id}")
    assert used["props"]["case_labels"] == [f"{survivor.pseudonym}'s phone"]
    person = _node(f"ent-{survivor.id}")
    assert person["props"]["label"] == survivor.pseudonym
    assert (person["props"]["survivor"], person["props"]["minor"]) == (True, True)
    [rel] = client.read("MATCH (s:Entity)-[r:CALLED {id: $id}]->(t:Entity) "
                        "RETURN s.id AS s, t.id AS t, r.count AS count, r.cases AS cases, "
                        "toString(r.first_seen) AS first", id=f"lnk-{link.id}")
    assert (rel["s"], rel["t"], rel["count"], rel["cases"]) == (
        f"ent-{a.id}", f"ent-{b.id}", 7, [team.case_id])
    assert rel["first"].startswith("2025-01-02T00:00")
    assert (_count_nodes(), _count_links()) == (3, 2)


def test_an_entity_in_a_second_case_carries_both_cases(app, team):
    from tests.factories_investigations import make_case, person

    phone = add_phone(team.lead[1], team.case_id, "312-555-0199")
    _, other = person(agency=team.other_agency)
    other_case = make_case(other, title="Operation Wren")
    add_phone(other, other_case, "+13125550199")
    assert _node(f"ent-{phone.id}")["props"]["cases"] == sorted([team.case_id, other_case])


def test_draining_twice_changes_nothing(app, team):
    load_synthetic(team.lead[1], team.case_id, _network())
    assert pending_outbox() == []
    before = projection.snapshot()
    # replay every row ever written, twice: MERGE on stable ids, current state
    for _ in range(2):
        db.session.execute(update(GraphOutbox).values(processed_at=None))
        db.session.commit()
        result = outbox.drain(batch=50)
        assert result.ok and result.processed == db.session.query(GraphOutbox).count()
        assert result.batches > 1
        assert projection.snapshot() == before
    assert outbox.drain().processed == 0  # nothing waits: nothing done
    assert projection.snapshot() == before


def test_neo4j_down_then_up_loses_nothing(app, team, runner):
    real_uri = app.config["NEO4J_URI"]
    app.config["NEO4J_URI"] = closed_bolt_uri()  # Neo4j "down"
    client.close(app)
    lead_api = api_caller(app, team.lead[0])
    cid = team.case_id
    created = []
    for number in ("312-555-0111", "312-555-0112"):
        resp = lead_api.post(f"/api/v1/cases/{cid}/entities",
                             {"kind": "phone", "identifiers": [{"kind": "phone",
                                                                "value": number}]})
        assert resp.status_code == 201, resp.json  # the write succeeds regardless
        created.append(resp.json["id"])
    resp = lead_api.post(f"/api/v1/cases/{cid}/links", {
        "source_id": created[0], "target_id": created[1], "type": "TEXTED", "count": 3})
    assert resp.status_code == 201
    survivor = add_person(team.lead[1], cid, "Maria Lopez", role="victim", dob=_dob(15))
    waiting = pending_outbox()
    assert len(waiting) == 4
    assert waiting[0].attempts >= 1 and waiting[0].last_error
    failed = runner.invoke(args=["graph", "drain"])
    assert failed.exit_code != 0 and "4 rows wait" in failed.output

    app.config["NEO4J_URI"] = real_uri  # Neo4j back
    client.close(app)
    assert _count_nodes() == 0  # nothing reached the graph while it was down
    result = runner.invoke(args=["graph", "drain"])
    assert result.exit_code == 0, result.output
    assert "processed 4 outbox rows: 3 entities, 1 links" in result.output
    assert pending_outbox() == []
    assert {n["id"] for n in client.read("MATCH (n:Entity) RETURN n.id AS id")} == {
        f"ent-{i}" for i in (*created, survivor.id)}
    assert _count_links() == 1
    # and the embedded in-process drain resumes on the next write once the backoff passes
    app.extensions["graph_outbox"]["down_until"] = 0.0
    later = add_phone(team.lead[1], cid, "312-555-0113")
    assert pending_outbox() == [] and _node(f"ent-{later.id}") is not None


def test_rebuild_gives_the_graph_the_drain_built(app, team, runner):
    lead = team.lead[1]
    ids = load_synthetic(lead, team.case_id, _network(seed=5))
    some = list(ids.values())
    # restatements and a second case, so incremental updates really happened
    service.add_link(actor=lead, case_id=team.case_id, source_id=some[0], target_id=some[1],
                     type="ASSOCIATED_WITH", first_seen="2024-02-01", count=2)
    service.add_link(actor=lead, case_id=team.case_id, source_id=some[0], target_id=some[1],
                     type="ASSOCIATED_WITH", first_seen="2024-01-01", count=5)
    assert pending_outbox() == []
    incremental = projection.snapshot()
    assert len(incremental["nodes"]) == db.session.query(Entity).count()
    assert len(incremental["links"]) == db.session.query(Link).count()

    result = runner.invoke(args=["graph", "rebuild", "--batch", "17"])
    assert result.exit_code == 0, result.output
    assert f"rebuilt: {len(incremental['nodes'])} entities" in result.output
    assert projection.snapshot() == incremental
    # from an empty graph too
    projection.clear()
    assert runner.invoke(args=["graph", "rebuild"]).exit_code == 0
    assert projection.snapshot() == incremental


def test_rebuild_covers_rows_that_waited(app, team, runner):
    real_uri = app.config["NEO4J_URI"]
    app.config["NEO4J_URI"] = closed_bolt_uri()
    client.close(app)
    phone = add_phone(team.lead[1], team.case_id, "312-555-0121")
    assert len(pending_outbox()) == 1
    app.config["NEO4J_URI"] = real_uri
    client.close(app)
    assert runner.invoke(args=["graph", "rebuild"]).exit_code == 0
    assert pending_outbox() == []
    assert _node(f"ent-{phone.id}") is not None


def test_the_graph_holds_no_survivor_identity(app, team, runner):
    lead = team.lead[1]
    network = _network(seed=9)
    ids = load_synthetic(lead, team.case_id, network)
    extra = add_person(lead, team.case_id, "Zoë Ramírez", role="victim", dob=_dob(16),
                       identifiers=[("person", f"Zoë Ramírez|{_dob(16)}")],
                       aliases=["Little Z"])
    survivors = list(db.session.scalars(select(Entity).where(Entity.pseudonym.is_not(None))))
    assert extra.id in {s.id for s in survivors}
    assert len(survivors) == len(network.by_role("victim")) + 1
    phrases, words = set(), set()  # matched as substrings / as whole words
    for s in survivors:
        for ce in s.case_links:
            phrases |= {ce.label, *(ce.props.get("names") or []),
                        *(ce.props.get("aliases") or []), ce.props.get("dob")}
            for name in ce.props.get("names") or []:
                words |= set(re.findall(r"\w+", name.casefold()))  # given name, surname alone
        phrases |= {i.value for i in s.identifiers} | {i.display for i in s.identifiers}
    phrases = {x.casefold() for x in phrases if x}
    # a word a non-survivor's label also has (a buyer called Lopez) proves nothing
    words -= {w for e in db.session.scalars(select(Entity).where(Entity.pseudonym.is_(None)))
              for ce in e.case_links for w in re.findall(r"\w+", ce.label.casefold())}
    words = {w for w in words if len(w) > 2}

    def leaks() -> list[str]:
        found = []
        rows = client.read("MATCH (n) RETURN properties(n) AS p UNION ALL "
                           "MATCH ()-[r]->() RETURN properties(r) AS p")
        for row in rows:
            for key, value in row["p"].items():
                for v in value if isinstance(value, list) else [value]:
                    text = str(v).casefold()
                    found += [f"{key}={v!r} holds {x!r}" for x in phrases if x in text]
                    found += [f"{key}={v!r} holds {w!r}" for w in words
                              if w in re.findall(r"\w+", text)]
        return found

    assert phrases and words, "the test must look for something"
    assert leaks() == []
    assert runner.invoke(args=["graph", "rebuild"]).exit_code == 0
    assert leaks() == []
    labels = {r["label"] for r in client.read(
        "MATCH (n:Person {survivor: true}) RETURN n.label AS label")}
    assert labels == {s.pseudonym for s in survivors}
    assert ids  # the synthetic network is in the graph too


@pytest.mark.parametrize("payload", [
    {"kind": "phone", "label": "burner\u0000"},
    {"kind": "person", "label": "x", "props": {"aliases": ["a\u0000"]}},
    {"kind": "phone", "identifiers": [{"kind": "online_account", "value": "ig:\u0000x"}]},
])
def test_bad_input_is_422_on_every_database(app, team, payload):
    """NUL characters would make PostgreSQL fail the insert (a 500): refused as input."""
    api = api_caller(app, team.lead[0])
    resp = api.post(f"/api/v1/cases/{team.case_id}/entities", payload)
    assert resp.status_code == 422, resp.json
    assert db.session.query(Entity).count() == 0
    assert db.session.query(GraphOutbox).count() == 0
