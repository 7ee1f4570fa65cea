"""Graph questions against the real Neo4j, on small networks with known answers.

Networks: hand-built ones small enough to work the answer out on paper, and the
synthetic network (``synthetic.generate``) whose ground truth (controllers, cells, a
unique shortest path) is known by construction. Every graph is written through the
projection writer (``projection.upsert_entities`` / ``upsert_links``), as the outbox
drain writes it.

These tests touch Neo4j only, no SQL, so they build their app without the
``db_backend`` parametrisation (running them again on PostgreSQL would test nothing
new).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import igraph as ig
import pytest

from taskforce.graph import analysis, projection, queries, synthetic
from tests import factories_graph
from tests.factories_graph import load_rows, synthetic_rows

pytestmark = pytest.mark.integration

CASE, OTHER, THIRD = 101, 202, 303


# --------------------------------------------------------------------------- fixtures

# shared with test_graph_projection_writer.py: an app on Neo4j, an empty graph per test
graph_app, graph = factories_graph.graph_app, factories_graph.graph

def entity(eid: str, kind: str, cases: list[int] = (CASE,), **kw: Any) -> dict[str, Any]:
    return {"id": eid, "kind": kind, "label": eid.upper(), "cases": list(cases),
            "survivor": kw.get("survivor", False), "minor": kw.get("minor", False)}


def link(lid: str, type_: str, source: str, target: str, first: str | None = "2024-01-01",
         last: str | None = None, *, cases: list[int] = (CASE,), confidence: float = 1.0,
         count: int = 1, amount: float | None = None) -> dict[str, Any]:
    return {"id": lid, "type": type_, "source": source, "target": target, "cases": list(cases),
            "first_seen": first, "last_seen": last or first, "confidence": confidence,
            "count": count, "amount": amount}


load = load_rows


def ids(items: list[dict[str, Any]]) -> set[str]:
    return {i["id"] for i in items}


def path_ids(path: dict[str, Any]) -> list[str]:
    return [n["id"] for n in path["nodes"]]


# The task force's small case: a controller's phone called by two buyers' phones, an
# account paid by one buyer, a victim at a motel.
#
#   b1 -USES- ph_b1 -CALLED(Mar, 0.9)-> ph_boss <-CALLED(Jun, 0.4)- ph_b2 -USES- b2
#   boss -USES-> ph_boss;  boss -OWNS-> acct <-PAID(Mar)- b1
#   boss -CONTROLS-> victim -STAYED_AT(Mar)-> motel
SMALL_ENTITIES = [
    entity("boss", "person"), entity("b1", "person"), entity("b2", "person"),
    entity("victim", "person", survivor=True, minor=True),
    entity("ph_boss", "phone"), entity("ph_b1", "phone"), entity("ph_b2", "phone"),
    entity("acct", "online_account"), entity("motel", "location"),
]
YEAR = ("2024-01-01", "2024-12-31")
SMALL_LINKS = [
    link("L01", "USES", "boss", "ph_boss", *YEAR),
    link("L02", "USES", "b1", "ph_b1", *YEAR),
    link("L03", "USES", "b2", "ph_b2", *YEAR),
    link("L04", "CALLED", "ph_b1", "ph_boss", "2024-03-01", "2024-03-10", confidence=0.9,
         count=5),
    link("L05", "CALLED", "ph_b2", "ph_boss", "2024-06-01", "2024-06-05", confidence=0.4,
         count=2),
    link("L06", "PAID", "b1", "acct", "2024-03-02", amount=200.0),
    link("L07", "OWNS", "boss", "acct", *YEAR),
    link("L08", "CONTROLS", "boss", "victim", *YEAR),
    link("L09", "STAYED_AT", "victim", "motel", "2024-03-01", "2024-03-03"),
]


@pytest.fixture()
def small(graph):
    load(SMALL_ENTITIES, SMALL_LINKS)


# --------------------------------------------------------------------------- expand

def test_expand_one_hop_is_the_direct_neighbourhood(small):
    out = queries.expand(case_ids=[CASE], entity_ids=["ph_boss"], hops=1)
    assert ids(out["nodes"]) == {"ph_boss", "boss", "ph_b1", "ph_b2"}
    assert ids(out["edges"]) == {"L01", "L04", "L05"}
    assert out["truncated"] is False
    # Nearest first: the start, then its neighbours by id.
    assert [n["id"] for n in out["nodes"]] == ["ph_boss", "boss", "ph_b1", "ph_b2"]


def test_expand_two_hops_leaves_out_links_among_the_outer_ring(small):
    out = queries.expand(case_ids=[CASE], entity_ids=["ph_boss"], hops=2)
    assert ids(out["nodes"]) == {"ph_boss", "boss", "ph_b1", "ph_b2",
                                 "b1", "b2", "acct", "victim"}
    # L06 (b1-acct) joins two entities two hops out; L09 leads to the motel, 3 hops out.
    assert ids(out["edges"]) == {"L01", "L02", "L03", "L04", "L05", "L07", "L08"}
    three = queries.expand(case_ids=[CASE], entity_ids=["ph_boss"], hops=3)
    assert ids(three["nodes"]) == ids(out["nodes"]) | {"motel"}
    assert ids(three["edges"]) == {f"L0{i}" for i in range(1, 10)}


def test_expand_returns_plain_dicts_with_every_field(small):
    out = queries.expand(case_ids=[CASE], entity_ids=["boss"], hops=1)
    victim = next(n for n in out["nodes"] if n["id"] == "victim")
    assert victim == {"id": "victim", "kind": "person", "label": "VICTIM",
                      "survivor": True, "minor": True}
    call = queries.expand(case_ids=[CASE], entity_ids=["ph_b1"], hops=1,
                          link_types=["CALLED"])["edges"]
    assert call == [{"id": "L04", "type": "CALLED", "source": "ph_b1", "target": "ph_boss",
                     "first_seen": "2024-03-01T00:00:00+00:00",
                     "last_seen": "2024-03-10T00:00:00+00:00",
                     "confidence": 0.9, "count": 5, "amount": None}]


def test_expand_filters_link_types(small):
    out = queries.expand(case_ids=[CASE], entity_ids=["ph_boss"], hops=2,
                         link_types=["CALLED", "USES"])
    assert ids(out["nodes"]) == {"ph_boss", "boss", "ph_b1", "ph_b2", "b1", "b2"}
    assert ids(out["edges"]) == {"L01", "L02", "L03", "L04", "L05"}


def test_expand_filters_kinds_and_does_not_walk_through_others(small):
    # Phones only: the boss is a person, so nothing is reached through him.
    out = queries.expand(case_ids=[CASE], entity_ids=["ph_boss"], hops=3, kinds=["phone"])
    assert ids(out["nodes"]) == {"ph_boss", "ph_b1", "ph_b2"}
    assert ids(out["edges"]) == {"L04", "L05"}
    # The start is kept whatever its kind; the database's spelling and the label work.
    out = queries.expand(case_ids=[CASE], entity_ids=["boss"], hops=1,
                         kinds=["OnlineAccount", "location"])
    assert ids(out["nodes"]) == {"boss", "acct"}


def test_expand_filters_the_date_window(small):
    # Active some time in May-June: the year-long USES and the June call.
    out = queries.expand(case_ids=[CASE], entity_ids=["ph_boss"], hops=1,
                         since="2024-05-01", until="2024-07-01")
    assert ids(out["edges"]) == {"L01", "L05"}
    # A window ending before June 1 drops the June call; one from March 11 drops the March one.
    assert ids(queries.expand(case_ids=[CASE], entity_ids=["ph_boss"], hops=1,
                              until="2024-05-31")["edges"]) == {"L01", "L04"}
    assert ids(queries.expand(case_ids=[CASE], entity_ids=["ph_boss"], hops=1,
                              since="2024-03-11T00:00:00Z")["edges"]) == {"L01", "L05"}
    # The window's edge is inclusive.
    assert "L04" in ids(queries.expand(case_ids=[CASE], entity_ids=["ph_boss"], hops=1,
                                       since="2024-03-10")["edges"])


def test_expand_filters_min_confidence(small):
    out = queries.expand(case_ids=[CASE], entity_ids=["ph_boss"], hops=2, min_confidence=0.5)
    assert ids(out["nodes"]) == {"ph_boss", "boss", "ph_b1", "b1", "acct", "victim"}
    assert "L05" not in ids(out["edges"])


def test_expand_limit_keeps_the_nearest_and_says_so(small):
    out = queries.expand(case_ids=[CASE], entity_ids=["ph_boss"], hops=2, limit=3)
    assert [n["id"] for n in out["nodes"]] == ["ph_boss", "boss", "ph_b1"]
    assert ids(out["edges"]) == {"L01", "L04"}
    assert out["truncated"] is True


def test_expand_from_several_entities(small):
    out = queries.expand(case_ids=[CASE], entity_ids=["b1", "b2"], hops=1)
    assert ids(out["nodes"]) == {"b1", "b2", "ph_b1", "ph_b2", "acct"}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"hops": 0}, "hops"), ({"hops": 4}, "hops"), ({"hops": "2"}, "hops"),
    ({"kinds": ["spaceship"]}, "kind"), ({"link_types": ["LOVES"]}, "link type"),
    ({"link_types": ["CALLED]->() DETACH DELETE n //"]}, "link type"),
    ({"since": "yesterday"}, "since"), ({"since": "2024-05-01", "until": "2024-04-01"}, "until"),
    ({"min_confidence": 2}, "min_confidence"), ({"limit": 0}, "limit"),
    ({"entity_ids": []}, "entity_ids"), ({"case_ids": "1"}, "case_ids"),
])
def test_expand_rejects_bad_arguments(small, kwargs, message):
    args = {"case_ids": [CASE], "entity_ids": ["boss"], **kwargs}
    with pytest.raises(ValueError, match=message):
        queries.expand(**args)
    assert projection.snapshot()["links"]  # nothing was touched


# --------------------------------------------------------------------------- paths

# A diamond with three two-hop routes from a to d, and a longer detour.
#   a - m1 - d,  a - m2 - d,  a - m3 - d (m3's second hop is a PAID),  a - x - y - z - d
DIAMOND_ENTITIES = [entity(i, "person") for i in ("a", "m1", "m2", "m3", "x", "y", "z", "d")]
DIAMOND_LINKS = [
    link("D1", "ASSOCIATED_WITH", "a", "m1"), link("D2", "ASSOCIATED_WITH", "m1", "d"),
    link("D3", "ASSOCIATED_WITH", "a", "m2"), link("D4", "ASSOCIATED_WITH", "d", "m2"),
    link("D5", "ASSOCIATED_WITH", "a", "m3"), link("D6", "PAID", "m3", "d"),
    link("D7", "ASSOCIATED_WITH", "a", "x"), link("D8", "ASSOCIATED_WITH", "x", "y"),
    link("D9", "ASSOCIATED_WITH", "y", "z"), link("DA", "ASSOCIATED_WITH", "z", "d"),
]


@pytest.fixture()
def diamond(graph):
    load(DIAMOND_ENTITIES, DIAMOND_LINKS)


def test_all_shortest_paths_on_a_diamond(diamond):
    paths = queries.all_shortest_paths(case_ids=[CASE], source="a", target="d")
    assert sorted(path_ids(p) for p in paths) == [["a", "m1", "d"], ["a", "m2", "d"],
                                                  ["a", "m3", "d"]]
    assert {p["length"] for p in paths} == {2}
    # Direction is ignored (D4 points from d to m2) and edges keep their own direction.
    via_m2 = next(p for p in paths if p["nodes"][1]["id"] == "m2")
    assert [(e["id"], e["source"], e["target"]) for e in via_m2["edges"]] == [
        ("D3", "a", "m2"), ("D4", "d", "m2")]
    assert len(queries.all_shortest_paths(case_ids=[CASE], source="a", target="d",
                                          limit=2)) == 2


def test_shortest_path_respects_link_types_and_max_hops(diamond):
    path = queries.shortest_path(case_ids=[CASE], source="a", target="d")
    assert path["length"] == 2 and path_ids(path)[1] in {"m1", "m2", "m3"}
    # Without ASSOCIATED_WITH there is no route at all; with only it, m3 is out.
    assert queries.shortest_path(case_ids=[CASE], source="a", target="d",
                                 link_types=["PAID"]) is None
    only = queries.all_shortest_paths(case_ids=[CASE], source="a", target="d",
                                      link_types=["ASSOCIATED_WITH"])
    assert sorted(path_ids(p)[1] for p in only) == ["m1", "m2"]
    assert queries.shortest_path(case_ids=[CASE], source="a", target="d", max_hops=1) is None


def test_shortest_path_goes_around_what_the_actor_may_not_see(graph):
    load(DIAMOND_ENTITIES[:-1] + [entity("d", "person", cases=(CASE, OTHER)),
                                  entity("m1", "person", cases=(OTHER,)),
                                  entity("m2", "person", cases=(OTHER,))],
         [*DIAMOND_LINKS[:4], link("D5", "ASSOCIATED_WITH", "a", "m3"),
          link("D6", "PAID", "m3", "d", cases=(OTHER,)), *DIAMOND_LINKS[6:]])
    # m1, m2 and the link m3-d belong to the other case: only the detour is left.
    path = queries.shortest_path(case_ids=[CASE], source="a", target="d")
    assert path_ids(path) == ["a", "x", "y", "z", "d"]
    assert [len(p["edges"]) for p in queries.all_shortest_paths(
        case_ids=[CASE], source="a", target="d")] == [4]
    both = queries.all_shortest_paths(case_ids=[CASE, OTHER], source="a", target="d")
    assert sorted(path_ids(p)[1] for p in both) == ["m1", "m2", "m3"]


def test_path_arguments_are_checked(diamond):
    with pytest.raises(ValueError, match="different"):
        queries.shortest_path(case_ids=[CASE], source="a", target="a")
    with pytest.raises(ValueError, match="max_hops"):
        queries.shortest_path(case_ids=[CASE], source="a", target="d", max_hops=11)
    with pytest.raises(ValueError, match="link type"):
        queries.all_shortest_paths(case_ids=[CASE], source="a", target="d",
                                   link_types=["X"])
    assert queries.shortest_path(case_ids=[CASE], source="a", target="nobody") is None


# --------------------------------------------------------------------------- time-respecting

# Money from a buyer through two accounts to the boss, dated forward; a second route
# through acct3 whose last hop is dated before the one into acct3.
#   buyer -PAID(01-01)-> acct1 -PAID(01-05)-> acct2 -PAID(01-09)-> boss
#   buyer -PAID(01-02)-> acct3 -PAID(01-10)-> boss2 ... acct3 -PAID(01-01)-> boss
FLOW_ENTITIES = [entity("buyer", "person"), entity("acct1", "bank_account"),
                 entity("acct2", "bank_account"), entity("acct3", "bank_account"),
                 entity("boss", "person"), entity("boss2", "person")]


def flow_links(last_hop: str) -> list[dict[str, Any]]:
    return [link("F1", "PAID", "buyer", "acct1", "2024-01-01", amount=100),
            link("F2", "PAID", "acct1", "acct2", "2024-01-05", amount=100),
            link("F3", "PAID", "acct2", "boss", last_hop, amount=100),
            link("F4", "PAID", "buyer", "acct3", "2024-01-02", amount=50),
            link("F5", "PAID", "acct3", "boss", "2024-01-01", amount=50),
            link("F6", "PAID", "acct3", "boss2", "2024-01-10", amount=50)]


def test_time_respecting_path_found_only_when_dates_go_forward(graph):
    load(FLOW_ENTITIES, flow_links("2024-01-09"))
    paths = queries.time_respecting_paths(case_ids=[CASE], source="buyer", target="boss")
    # buyer-acct3-boss is shorter but its second hop (01-01) precedes its first (01-02).
    assert [path_ids(p) for p in paths] == [["buyer", "acct1", "acct2", "boss"]]
    assert [e["id"] for e in paths[0]["edges"]] == ["F1", "F2", "F3"]
    # The same network with the last hop dated back to January 3rd: no flow at all.
    projection.upsert_links([link("F3", "PAID", "acct2", "boss", "2024-01-03", amount=100)])
    assert queries.time_respecting_paths(case_ids=[CASE], source="buyer",
                                         target="boss") == []
    # A plain shortest path still finds the (time-ignoring) route.
    assert path_ids(queries.shortest_path(case_ids=[CASE], source="buyer",
                                          target="boss")) == ["buyer", "acct3", "boss"]


def test_time_respecting_paths_follow_direction_and_types(graph):
    load(FLOW_ENTITIES, flow_links("2024-01-09"))
    # Against the money's direction there is nothing.
    assert queries.time_respecting_paths(case_ids=[CASE], source="boss", target="buyer") == []
    # CALLED only: no PAID link may be used.
    assert queries.time_respecting_paths(case_ids=[CASE], source="buyer", target="boss",
                                         link_types=["CALLED"]) == []
    # Without a target: every forward chain from the buyer, shortest first.
    chains = [path_ids(p) for p in queries.time_respecting_paths(case_ids=[CASE],
                                                                 source="buyer")]
    assert chains == [["buyer", "acct1"], ["buyer", "acct3"], ["buyer", "acct1", "acct2"],
                      ["buyer", "acct3", "boss2"], ["buyer", "acct1", "acct2", "boss"]]
    assert len(queries.time_respecting_paths(case_ids=[CASE], source="buyer", limit=2)) == 2
    assert queries.time_respecting_paths(case_ids=[CASE], source="buyer", target="boss",
                                         max_hops=2) == []
    with pytest.raises(ValueError, match="max_hops"):
        queries.time_respecting_paths(case_ids=[CASE], source="buyer", max_hops=7)


def test_time_respecting_paths_equal_dates_count_as_forward(graph):
    load(FLOW_ENTITIES, flow_links("2024-01-05"))
    assert [path_ids(p) for p in queries.time_respecting_paths(
        case_ids=[CASE], source="buyer", target="boss")] == [["buyer", "acct1", "acct2", "boss"]]


# --------------------------------------------------------------------------- shared

SHARED_ENTITIES = [entity(i, "person") for i in ("p", "q", "r", "s1", "s2", "s3")]
SHARED_LINKS = [
    link("S1", "CALLED", "p", "s1"), link("S2", "CALLED", "s1", "q"),
    link("S3", "PAID", "r", "s1"), link("S4", "USES", "p", "s2"),
    link("S5", "USES", "q", "s2"), link("S6", "CALLED", "p", "s3"),
    link("S7", "CALLED", "p", "q"),  # the given entities' own link is not a connection
]


def test_shared_connections(graph):
    load(SHARED_ENTITIES, SHARED_LINKS)
    out = queries.shared_connections(case_ids=[CASE], entity_ids=["p", "q", "r"])
    assert [(o["entity"]["id"], o["shared_with"]) for o in out] == [
        ("s1", ["p", "q", "r"]), ("s2", ["p", "q"])]
    assert ids(out[0]["edges"]) == {"S1", "S2", "S3"}
    three = queries.shared_connections(case_ids=[CASE], entity_ids=["p", "q", "r"],
                                       min_shared=3)
    assert [o["entity"]["id"] for o in three] == ["s1"]
    with pytest.raises(ValueError, match="min_shared"):
        queries.shared_connections(case_ids=[CASE], entity_ids=["p", "q"], min_shared=3)
    with pytest.raises(ValueError, match="at least 2"):
        queries.shared_connections(case_ids=[CASE], entity_ids=["p"])


# --------------------------------------------------------------------------- need to know

# Two cases. Case OTHER has its own people; "hub" (a motel, say) and "twin" (a phone)
# are in both cases, and case 1 links them (C1e): a link a member of case 2 must not
# see although both its ends are visible to them.
TWO_CASE_ENTITIES = [
    entity("c1_boss", "person"), entity("c1_phone", "phone"), entity("c1_buyer", "person"),
    entity("hub", "location", cases=(CASE, OTHER)), entity("twin", "phone", cases=(CASE, OTHER)),
    entity("c2_boss", "person", cases=(OTHER,)), entity("c2_phone", "phone", cases=(OTHER,)),
]
TWO_CASE_LINKS = [
    link("C1a", "USES", "c1_boss", "c1_phone"), link("C1b", "CALLED", "c1_buyer", "c1_phone"),
    link("C1c", "STAYED_AT", "c1_boss", "hub"), link("C1d", "PAID", "c1_buyer", "c1_boss"),
    link("C1e", "ASSOCIATED_WITH", "twin", "hub"),
    link("C2a", "USES", "c2_boss", "c2_phone", cases=(OTHER,)),
    link("C2b", "STAYED_AT", "c2_boss", "hub", cases=(OTHER,)),
    link("C2c", "PAID", "c2_boss", "c1_boss", cases=(OTHER,)),  # a link of case 2 to case 1
]
CASE1_ONLY = {"c1_boss", "c1_phone", "c1_buyer", "C1a", "C1b", "C1c", "C1d", "C1e"}


def everything_seen(case_ids: list[int]) -> set[str]:
    """Every entity and link id any graph question returns for these cases."""
    seen: set[str] = set()

    def add_graph(g: dict[str, Any] | None) -> None:
        if g:
            seen.update(ids(g["nodes"]), ids(g["edges"]))

    all_ids = [e["id"] for e in TWO_CASE_ENTITIES]
    add_graph(queries.expand(case_ids=case_ids, entity_ids=all_ids, hops=3))
    for s in all_ids:
        for t in all_ids:
            if s != t:
                add_graph(queries.shortest_path(case_ids=case_ids, source=s, target=t))
                for p in queries.all_shortest_paths(case_ids=case_ids, source=s, target=t):
                    add_graph(p)
        for p in queries.time_respecting_paths(case_ids=case_ids, source=s,
                                               link_types=list(projection.LINK_TYPES)):
            add_graph(p)
    for o in queries.shared_connections(case_ids=case_ids, entity_ids=all_ids, min_shared=1):
        seen.add(o["entity"]["id"])
        seen.update(o["shared_with"], ids(o["edges"]))
    for case_id in (CASE, OTHER):
        add_graph(queries.case_subgraph(case_ids=case_ids, case_id=case_id))
        seen.update(ids(analysis.key_players(case_ids=case_ids, case_id=case_id)))
        seen.update(analysis.communities(case_ids=case_ids, case_id=case_id)["membership"])
    return seen


def test_need_to_know_an_outsider_gets_nothing_of_the_case(graph):
    load(TWO_CASE_ENTITIES, TWO_CASE_LINKS)
    outsider = everything_seen([OTHER])
    assert outsider & CASE1_ONLY == set()
    # What the member of case 2 does see: its own entities and links, and the shared
    # hub, but not case 1's link to the hub.
    assert outsider == {"hub", "twin", "c2_boss", "c2_phone", "C2a", "C2b"}
    # Someone on neither case sees nothing at all; one on case 1 sees all of case 1.
    assert everything_seen([THIRD]) == set()
    assert everything_seen([]) == set()
    assert everything_seen([CASE]) == CASE1_ONLY | {"hub", "twin"}


def test_need_to_know_shared_entity_shows_only_the_readers_links(graph):
    load(TWO_CASE_ENTITIES, TWO_CASE_LINKS)
    out = queries.expand(case_ids=[OTHER], entity_ids=["hub"], hops=2)
    assert ids(out["nodes"]) == {"hub", "c2_boss", "c2_phone"}
    assert ids(out["edges"]) == {"C2b", "C2a"}
    # Case 2's own link to c1_boss is its, but c1_boss is not: the link stays hidden.
    assert "C2c" not in ids(out["edges"])
    # A start the actor may not see is as if it did not exist.
    assert queries.expand(case_ids=[OTHER], entity_ids=["c1_boss"], hops=1)["nodes"] == []
    assert queries.shortest_path(case_ids=[OTHER], source="hub", target="c1_boss") is None
    # Both ends visible, the only link between them case 1's: no path for case 2.
    assert queries.shortest_path(case_ids=[OTHER], source="hub", target="twin") is None
    assert path_ids(queries.shortest_path(case_ids=[CASE], source="hub",
                                          target="twin")) == ["hub", "twin"]
    shared = queries.shared_connections(case_ids=[OTHER], entity_ids=["twin", "c2_boss"],
                                        min_shared=1)
    assert [(o["entity"]["id"], o["shared_with"]) for o in shared] == [
        ("c2_phone", ["c2_boss"]), ("hub", ["c2_boss"])]
    shared = queries.shared_connections(case_ids=[CASE, OTHER], entity_ids=["twin", "c2_boss"])
    assert [(o["entity"]["id"], o["shared_with"]) for o in shared] == [
        ("hub", ["c2_boss", "twin"])]
    assert queries.case_subgraph(case_ids=[OTHER], case_id=CASE)["nodes"] == []
    # With both cases readable, the case-2 link into case 1 shows up.
    both = queries.case_subgraph(case_ids=[CASE, OTHER], case_id=OTHER)
    assert ids(both["edges"]) == {"C2a", "C2b", "C2c"}
    assert ids(both["nodes"]) == {"hub", "twin", "c2_boss", "c2_phone", "c1_boss"}


def test_case_subgraph(graph):
    load(TWO_CASE_ENTITIES, TWO_CASE_LINKS)
    sub = queries.case_subgraph(case_ids=[CASE], case_id=CASE)
    assert ids(sub["nodes"]) == {"c1_boss", "c1_phone", "c1_buyer", "hub", "twin"}
    assert ids(sub["edges"]) == {"C1a", "C1b", "C1c", "C1d", "C1e"}
    assert sub["truncated"] is False
    assert queries.case_subgraph(case_ids=[CASE], case_id=CASE, limit=2)["truncated"] is True
    with pytest.raises(ValueError, match="case_id"):
        queries.case_subgraph(case_ids=[CASE], case_id="101")


# --------------------------------------------------------------------------- synthetic network

@pytest.fixture(scope="module")
def network() -> synthetic.Network:
    return synthetic.generate(seed=7)


@pytest.fixture()
def loaded(graph, network):
    load(*synthetic_rows(network, CASE))
    return network


def test_synthetic_shortest_path_is_the_ground_truth(loaded):
    truth = synthetic.ground_truth(loaded)
    path = queries.shortest_path(case_ids=[CASE], source=truth.path_source,
                                 target=truth.path_target)
    assert path_ids(path) == truth.path
    # It is the unique shortest one as a sequence of entities; as links there are two,
    # since the buyer's phone both called and texted the burner.
    paths = queries.all_shortest_paths(case_ids=[CASE], source=truth.path_source,
                                       target=truth.path_target)
    assert {tuple(path_ids(p)) for p in paths} == {tuple(truth.path)}
    assert sorted(p["edges"][1]["type"] for p in paths) == ["CALLED", "TEXTED"]
    # Nobody outside the case finds it.
    assert queries.shortest_path(case_ids=[OTHER], source=truth.path_source,
                                 target=truth.path_target) is None


def test_synthetic_expand_matches_the_network(loaded):
    controller = loaded.cells[0].controller
    adjacency = defaultdict(set)
    for lk in loaded.links:
        adjacency[lk.source].add(lk.target)
        adjacency[lk.target].add(lk.source)
    one = queries.expand(case_ids=[CASE], entity_ids=[controller], hops=1)
    assert ids(one["nodes"]) == {controller} | adjacency[controller]
    two = queries.expand(case_ids=[CASE], entity_ids=[controller], hops=2, limit=5000)
    ring2 = set().union(*(adjacency[n] for n in adjacency[controller]))
    assert ids(two["nodes"]) == {controller} | adjacency[controller] | ring2
    expected_edges = {lk.id for lk in loaded.links
                      if (lk.source == controller or lk.target == controller
                          or lk.source in adjacency[controller]
                          or lk.target in adjacency[controller])}
    assert ids(two["edges"]) == expected_edges


def test_synthetic_key_players_are_the_controllers(loaded):
    truth = synthetic.ground_truth(loaded)
    top = analysis.key_players(case_ids=[CASE], case_id=CASE, top=len(truth.controllers))
    assert {p["id"] for p in top} == set(truth.controllers)
    assert [p["rank"] for p in top] == [1, 2, 3]
    assert all(p["betweenness"] > 0 and 0 < p["pagerank"] < 1 and p["degree"] > 5
               for p in top)
    # Same answer twice (deterministic), nothing for an outsider.
    assert analysis.key_players(case_ids=[CASE], case_id=CASE, top=3) == top
    assert analysis.key_players(case_ids=[OTHER], case_id=CASE) == []
    with pytest.raises(ValueError, match="top"):
        analysis.key_players(case_ids=[CASE], case_id=CASE, top=0)


def test_synthetic_key_players_betweenness_is_exact(loaded):
    # Betweenness on the undirected simple graph, against igraph on the generator's own
    # link list (no Neo4j in between): the projection and extraction lose nothing.
    g = ig.Graph.TupleList({tuple(sorted((lk.source, lk.target))) for lk in loaded.links},
                           directed=False)
    expected = dict(zip(g.vs["name"], g.betweenness(directed=False), strict=True))
    got = analysis.key_players(case_ids=[CASE], case_id=CASE, top=1000)
    assert len(got) == len(loaded.entities)
    for p in got:
        assert p["betweenness"] == pytest.approx(expected[p["id"]])


@pytest.mark.parametrize("method", ["leiden", "louvain"])
def test_synthetic_communities_are_the_cells(loaded, method):
    truth = synthetic.ground_truth(loaded)
    found = analysis.communities(case_ids=[CASE], case_id=CASE, method=method)
    assert set(found["membership"]) == set(truth.communities)
    # Modularity at its usual resolution splits a cell (buyers apart from the household)
    # but never mixes two: every community lies within one cell.
    for members in found["communities"]:
        cells = Counter(truth.communities[m] for m in members)
        assert cells.most_common(1)[0][1] >= 0.95 * len(members), cells
    # Each cell's controllers sit in different communities.
    assert len({found["membership"][c] for c in truth.controllers}) == len(truth.controllers)
    assert found["modularity"] > 0.5
    # At a coarser resolution the communities are the cells.
    coarse = analysis.communities(case_ids=[CASE], case_id=CASE, method=method, resolution=0.5)
    order = sorted(truth.communities)
    ari = ig.compare_communities([truth.communities[i] for i in order],
                                 [coarse["membership"][i] for i in order],
                                 method="adjusted_rand")
    assert ari > 0.9
    assert analysis.communities(case_ids=[CASE], case_id=CASE, method=method) == found


def test_analysis_arguments_are_checked(graph):
    with pytest.raises(ValueError, match="method"):
        analysis.communities(case_ids=[CASE], case_id=CASE, method="girvan")
    with pytest.raises(ValueError, match="resolution"):
        analysis.communities(case_ids=[CASE], case_id=CASE, resolution=0)
    assert analysis.communities(case_ids=[CASE], case_id=CASE)["communities"] == []
