"""The projection writer (taskforce.graph.projection) against the real Neo4j:
idempotent, order-independent, validating, and what it stores is what the model says.

Neo4j only, no SQL: the app is built without the db_backend parametrisation.
"""
from __future__ import annotations

import random
from typing import Any

import pytest
from neo4j.time import DateTime

from taskforce.graph import client, projection, queries, synthetic
from tests import factories_graph
from tests.factories_graph import synthetic_rows

# the fixtures shared with test_graph_queries.py (an app on Neo4j, an empty graph)
graph_app, graph = factories_graph.graph_app, factories_graph.graph

pytestmark = pytest.mark.integration

CASE, OTHER = 11, 22


@pytest.fixture(scope="module")
def rows() -> tuple[list[dict], list[dict]]:
    return synthetic_rows(synthetic.generate(seed=3, controllers=2, buyers=30), CASE,
                          confidence=0.8)


def entity(eid: str, kind: str = "person", **kw: Any) -> dict[str, Any]:
    return {"id": eid, "kind": kind, "label": kw.get("label", eid.title()),
            "cases": kw.get("cases", [CASE]), "survivor": kw.get("survivor", False),
            "minor": kw.get("minor", False)}


def link(lid: str, type_: str, source: str, target: str, **kw: Any) -> dict[str, Any]:
    return {"id": lid, "type": type_, "source": source, "target": target,
            "cases": kw.get("cases", [CASE]), "first_seen": kw.get("first_seen", "2024-02-01"),
            "last_seen": kw.get("last_seen", "2024-02-03T12:30:00+01:00"),
            "confidence": kw.get("confidence", 0.7), "count": kw.get("count", 3),
            "amount": kw.get("amount")}


# --------------------------------------------------------------------------- schema

def test_schema_is_idempotent_and_complete(graph):
    projection.ensure_schema()
    projection.ensure_schema()
    constraints = client.read("SHOW CONSTRAINTS YIELD name, labelsOrTypes, properties, type")
    assert {"name": "entity_id", "labelsOrTypes": ["Entity"], "properties": ["id"],
            "type": "UNIQUENESS"} in constraints
    indexes = client.read("SHOW INDEXES YIELD labelsOrTypes, properties, entityType, state "
                          "WHERE entityType = 'RELATIONSHIP'")
    indexed = {r["labelsOrTypes"][0] for r in indexes
               if r["properties"] == ["id"] and r["state"] == "ONLINE"}
    assert indexed == set(projection.LINK_TYPES)


def _operators(plan) -> list[str]:
    ops = [plan["operatorType"].split("@")[0]]
    for child in plan.get("children", []):
        ops += _operators(child)
    return ops


@pytest.mark.parametrize("write", ["upsert_links", "delete_links"])
def test_link_writes_seek_the_id_index_and_never_scan(graph, monkeypatch, write):
    """Every lookup of a link by id is an index seek (the planner, left alone, has been
    seen to scan a whole type's index once per row once the graph grew)."""
    seen: list[str] = []
    monkeypatch.setattr(client, "write", lambda cypher, timeout=60, **p: seen.append(cypher)
                        or [{"n": 0}])
    if write == "upsert_links":
        projection.upsert_links([link("L", "CALLED", "a", "b")])
    else:
        projection.delete_links(["L"])
    monkeypatch.undo()
    [cypher] = seen
    # Forced, not left to the planner's estimates (which an empty test graph cannot
    # reproduce): one SEEK hint per lookup.
    assert cypher.count("USING INDEX SEEK") >= len(projection.LINK_TYPES)
    with client.driver().session() as session:
        plan = session.run("EXPLAIN " + cypher, rows=[{"id": "L"}]).consume().plan
    ops = _operators(plan)
    seeks = [o for o in ops if "RelationshipIndexSeek" in o]
    assert len(seeks) >= len(projection.LINK_TYPES)
    if write == "delete_links":
        assert not [o for o in ops if "Scan" in o], ops
    # upsert_links: the MERGE of the relationship itself is left to the planner, which
    # picks by the statistics of the graph the earlier tests left (seen to differ
    # between runs), so only the hinted lookups are asserted above.


# --------------------------------------------------------------------------- what is stored

def test_entities_and_links_are_stored_as_the_model_says(graph):
    projection.upsert_entities([entity("ana", survivor=True, minor=True, cases=[CASE, OTHER]),
                                entity("acct", "bank_account")])
    projection.upsert_links([link("L1", "PAID", "ana", "acct", amount=125.5)])
    snap = projection.snapshot()
    assert snap["nodes"] == [
        {"id": "acct", "labels": ["BankAccount", "Entity"],
         "props": {"cases": [CASE], "id": "acct", "kind": "bank_account", "label": "Acct",
                   "minor": False, "survivor": False}},
        {"id": "ana", "labels": ["Entity", "Person"],
         "props": {"cases": [CASE, OTHER], "id": "ana", "kind": "person", "label": "Ana",
                   "minor": True, "survivor": True}},
    ]
    assert snap["links"] == [
        {"id": "L1", "type": "PAID", "source": "ana", "target": "acct",
         "props": {"amount": 125.5, "cases": [CASE], "confidence": 0.7, "count": 3,
                   "first_seen": "2024-02-01T00:00:00+00:00", "id": "L1",
                   "last_seen": "2024-02-03T11:30:00+00:00"}},
    ]
    # Dates are Neo4j temporal values (so Cypher compares them as times, not text).
    [row] = client.read("MATCH ()-[r:PAID]->() RETURN r.first_seen AS f, r.last_seen AS l")
    assert isinstance(row["f"], DateTime) and isinstance(row["l"], DateTime)


@pytest.mark.parametrize(("kind", "label"), [
    ("person", "Person"), ("location", "Location"), ("phone", "Phone"), ("email", "Email"),
    ("bank_account", "BankAccount"), ("crypto_wallet", "CryptoWallet"),
    ("online_account", "OnlineAccount"), ("ad", "Ad"), ("vehicle", "Vehicle"),
    ("organization", "Organization"), ("business", "Organization"),
    ("BankAccount", "BankAccount"), ("Crypto Wallet", "CryptoWallet"),
])
def test_every_kind_gets_its_label(kind, label):
    assert projection.kind_label(kind) == label


# --------------------------------------------------------------------------- idempotency

def test_replaying_batches_changes_nothing(graph, rows):
    entities, links = rows
    assert projection.upsert_entities(entities) == len(entities)
    assert projection.upsert_links(links) == len(links)
    first = projection.snapshot()
    assert len(first["nodes"]) == len(entities) and len(first["links"]) == len(links)
    # The same batches again, whole and in part, in another order.
    projection.upsert_links(links)
    projection.upsert_entities(entities)
    projection.upsert_links(links[: len(links) // 3])
    assert projection.snapshot() == first


def test_order_of_arrival_does_not_matter(graph, rows):
    entities, links = rows
    projection.upsert_entities(entities)
    projection.upsert_links(links)
    expected = projection.snapshot()
    projection.clear()
    assert projection.snapshot() == {"nodes": [], "links": []}
    # Links first (their endpoints do not exist yet), shuffled, in small batches;
    # then the entities, also shuffled.
    rng = random.Random(5)
    shuffled_links, shuffled_entities = links[:], entities[:]
    rng.shuffle(shuffled_links)
    rng.shuffle(shuffled_entities)
    for i in range(0, len(shuffled_links), 97):
        projection.upsert_links(shuffled_links[i:i + 97])
    projection.upsert_entities(shuffled_entities)
    assert projection.snapshot() == expected


def test_a_link_before_its_entity_is_invisible_until_the_entity_arrives(graph):
    projection.upsert_entities([entity("known")])
    projection.upsert_links([link("L1", "CALLED", "known", "late")])
    # The bare endpoint exists (so the link has somewhere to point) but has no cases:
    # no graph question shows it or the link to it.
    snap = projection.snapshot()
    assert {n["id"]: n["props"] for n in snap["nodes"]}["late"] == {"id": "late"}
    out = queries.expand(case_ids=[CASE], entity_ids=["known"], hops=1)
    assert [n["id"] for n in out["nodes"]] == ["known"] and out["edges"] == []
    projection.upsert_entities([entity("late", "phone")])
    out = queries.expand(case_ids=[CASE], entity_ids=["known"], hops=1)
    assert [n["id"] for n in out["nodes"]] == ["known", "late"]
    assert [e["id"] for e in out["edges"]] == ["L1"]
    late = next(n for n in projection.snapshot()["nodes"] if n["id"] == "late")
    assert late["labels"] == ["Entity", "Phone"]


def test_the_last_row_for_an_id_in_a_batch_wins(graph):
    projection.upsert_entities([entity("x", label="First"), entity("x", label="Second")])
    projection.upsert_entities([entity("y")])
    projection.upsert_links([link("L", "CALLED", "x", "y", count=1),
                             link("L", "CALLED", "x", "y", count=9)])
    snap = projection.snapshot()
    assert [n["props"]["label"] for n in snap["nodes"] if n["id"] == "x"] == ["Second"]
    assert [r["props"]["count"] for r in snap["links"]] == [9]


# --------------------------------------------------------------------------- changes

def test_an_update_replaces_properties_and_kind(graph):
    projection.upsert_entities([entity("e", "phone", cases=[CASE])])
    projection.upsert_entities([entity("e", "email", label="Renamed", cases=[OTHER])])
    [node] = projection.snapshot()["nodes"]
    assert node["labels"] == ["Email", "Entity"]
    assert node["props"]["label"] == "Renamed" and node["props"]["cases"] == [OTHER]


def test_a_relinked_link_moves(graph):
    projection.upsert_entities([entity(i) for i in ("a", "b", "c")])
    projection.upsert_links([link("L", "CALLED", "a", "b", amount=10)])
    # Re-pointed (say, b was merged into c), then retyped: still one relationship.
    projection.upsert_links([link("L", "CALLED", "a", "c")])
    assert [(r["type"], r["source"], r["target"]) for r in projection.snapshot()["links"]] == [
        ("CALLED", "a", "c")]
    projection.upsert_links([link("L", "TEXTED", "c", "a")])
    [moved] = projection.snapshot()["links"]
    assert (moved["type"], moved["source"], moved["target"]) == ("TEXTED", "c", "a")
    assert "amount" not in moved["props"]  # a None amount removes the property


def test_deletes(graph):
    projection.upsert_entities([entity(i) for i in ("a", "b", "c")])
    projection.upsert_links([link("L1", "CALLED", "a", "b"), link("L2", "PAID", "b", "c"),
                             link("L3", "OWNS", "a", "c")])
    assert projection.delete_links(["L1", "nope", "L1"]) == 1
    assert projection.delete_links(["L1"]) == 0  # again: nothing left to delete
    assert sorted(r["id"] for r in projection.snapshot()["links"]) == ["L2", "L3"]
    # An entity goes with its links; the others stay.
    assert projection.delete_entities(["b", "ghost"]) == 1
    snap = projection.snapshot()
    assert [n["id"] for n in snap["nodes"]] == ["a", "c"]
    assert [r["id"] for r in snap["links"]] == ["L3"]
    projection.clear()
    assert projection.snapshot() == {"nodes": [], "links": []}


def test_large_batches_are_split(graph, monkeypatch):
    monkeypatch.setattr(projection, "BATCH_SIZE", 7)
    calls = []
    real = client.write

    def counting(cypher, timeout=60, **params):
        calls.append(len(params.get("rows", [])))
        return real(cypher, timeout, **params)

    monkeypatch.setattr(client, "write", counting)
    assert projection.upsert_entities([entity(f"p{i:02d}") for i in range(20)]) == 20
    assert calls == [7, 7, 6]
    assert len(projection.snapshot()["nodes"]) == 20


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize(("row", "message"), [
    (link("L", "LOVES", "a", "b"), "unknown link type"),
    (link("L", "CALLED]->(x) DETACH DELETE x //", "a", "b"), "unknown link type"),
    (link("L", "CALLED", "a", "b", first_seen="last tuesday"), "ISO 8601"),
    (link("L", "CALLED", "a", "b", first_seen="2024-03-01", last_seen="2024-02-01"),
     "before"),
    (link("L", "CALLED", "a", "b", confidence=1.5), "confidence"),
    (link("L", "CALLED", "a", "b", cases=["11"]), "integers"),
    (link("", "CALLED", "a", "b"), "link id"),
    (link("L", "CALLED", "", "b"), "source"),
])
def test_bad_link_rows_are_refused_before_anything_is_written(graph, row, message):
    good = link("G", "CALLED", "a", "b")
    with pytest.raises(ValueError, match=message):
        projection.upsert_links([good, row])
    assert projection.snapshot() == {"nodes": [], "links": []}


@pytest.mark.parametrize(("row", "message"), [
    (entity("x", "spaceship"), "unknown entity kind"),
    (entity("x", "Person:Admin"), "unknown entity kind"),
    (entity("x", cases=[1.5]), "integers"),
    ({"kind": "person", "label": "no id"}, "entity id"),
])
def test_bad_entity_rows_are_refused_before_anything_is_written(graph, row, message):
    with pytest.raises(ValueError, match=message):
        projection.upsert_entities([entity("fine"), row])
    assert projection.snapshot() == {"nodes": [], "links": []}
