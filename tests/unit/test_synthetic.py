"""The synthetic network: deterministic, valid identifiers, known answers, streams that scale."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from collections import Counter, defaultdict, deque
from dataclasses import asdict
from datetime import date, datetime
from itertools import islice, pairwise
from pathlib import Path

import pytest

from taskforce.graph.identifiers import InvalidIdentifier, minor_on, normalize
from taskforce.graph.synthetic import (
    LINK_TYPES,
    Network,
    generate,
    generate_large,
    ground_truth,
    iter_bank_records,
    iter_call_records,
    large_phone_number,
    valid_area_codes,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def network() -> Network:
    return generate(seed=7)


def _adjacency(network: Network) -> dict[str, set[str]]:
    adj: dict[str, set[str]] = {eid: set() for eid in network.entities}
    for link in network.links:
        adj[link.source].add(link.target)
        adj[link.target].add(link.source)
    return adj


def _betweenness(adj: dict[str, set[str]]) -> dict[str, float]:
    """Brandes' algorithm, unweighted and undirected (a reference, independent of the app)."""
    score = dict.fromkeys(adj, 0.0)
    for s in adj:
        order, preds = [], defaultdict(list)
        sigma = dict.fromkeys(adj, 0)
        sigma[s] = 1
        dist = {s: 0}
        queue = deque([s])
        while queue:
            v = queue.popleft()
            order.append(v)
            for w in adj[v]:
                if w not in dist:
                    dist[w] = dist[v] + 1
                    queue.append(w)
                if dist[w] == dist[v] + 1:
                    sigma[w] += sigma[v]
                    preds[w].append(v)
        delta = dict.fromkeys(adj, 0.0)
        while order:
            w = order.pop()
            for v in preds[w]:
                delta[v] += sigma[v] / sigma[w] * (1 + delta[w])
            if w != s:
                score[w] += delta[w]
    return score


def _shortest_paths(adj: dict[str, set[str]], source: str, target: str) -> tuple[int, int]:
    """(distance, number of shortest paths) from source to target."""
    dist, count = {source: 0}, {source: 1}
    queue = deque([source])
    while queue:
        v = queue.popleft()
        for w in adj[v]:
            if w not in dist:
                dist[w] = dist[v] + 1
                count[w] = 0
                queue.append(w)
            if dist[w] == dist[v] + 1:
                count[w] += count[v]
    return dist[target], count[target]


# -- the network ------------------------------------------------------------------


def test_same_seed_same_network_other_seed_other_network():
    a, b, c = generate(seed=11), generate(seed=11), generate(seed=12)
    assert [asdict(e) for e in a.entities.values()] == [asdict(e) for e in b.entities.values()]
    assert [asdict(lk) for lk in a.links] == [asdict(lk) for lk in b.links]
    assert ground_truth(a) == ground_truth(b)
    assert [asdict(e) for e in a.entities.values()] != [asdict(e) for e in c.entities.values()]


def test_every_identifier_passes_normalize(network):
    count = 0
    for entity in network.entities.values():
        for kind, raw in entity.identifiers:
            try:
                normalize(kind, raw)
            except InvalidIdentifier as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{entity.id} {kind} {raw!r}: {exc}")
            count += 1
    kinds = {k for e in network.entities.values() for k, _ in e.identifiers}
    assert kinds == {"person", "phone", "address", "bank_account", "online_account",
                     "crypto_wallet", "email", "vehicle_plate", "vin", "ad", "url"}
    assert count > 150


def test_no_two_entities_share_an_identifier(network):
    owners = Counter(normalize(k, raw).key
                     for e in network.entities.values() for k, raw in e.identifiers)
    assert [key for key, n in owners.items() if n > 1] == []


def test_identifiers_are_fictional(network):
    for entity in network.by_kind("phone"):
        number = normalize("phone", entity.identifiers[0][1]).value
        assert number == entity.props["number"]
        assert number[5:10] == "55501", number  # NXX-555-01XX, reserved for fiction
    for entity in network.entities.values():
        for kind, raw in entity.identifiers:
            if kind == "email":
                assert normalize(kind, raw).value.endswith(("@example.com", "@example.org"))
            if kind == "url":
                assert ".example/" in normalize(kind, raw).value


def test_links_are_well_formed(network):
    ids = {lk.id for lk in network.links}
    assert len(ids) == len(network.links)
    used = {lk.type for lk in network.links}
    assert used == set(LINK_TYPES)
    for link in network.links:
        assert link.source in network.entities and link.target in network.entities
        assert link.source != link.target
        assert set(link.props) == {"first_seen", "last_seen", "count", "amount"}
        assert network.start.isoformat() <= link.props["first_seen"] <= link.props["last_seen"]
        assert link.props["last_seen"] <= network.end.isoformat()
        assert link.props["count"] >= 1
        assert (link.props["amount"] is not None) == (link.type == "PAID")


def test_burners_rotate_with_a_small_overlap(network):
    for cell in network.cells:
        phones = [network.entities[p].props for p in cell.burner_phones]
        assert len(phones) >= 2
        for before, after in pairwise(phones):
            overlap = (date.fromisoformat(before["active_to"])
                       - date.fromisoformat(after["active_from"])).days
            assert 1 <= overlap <= 14
        # Buyers call a burner only while it is live.
        for link in network.links:
            if link.type in ("CALLED", "TEXTED") and link.target in cell.burner_phones:
                phone = network.entities[link.target].props
                assert phone["active_from"] <= link.props["first_seen"]
                assert link.props["last_seen"] <= phone["active_to"]


def test_minors_are_victims_under_18_on_the_start_date(network):
    truth = ground_truth(network)
    victims = network.by_role("victim")
    assert truth.minors
    assert set(truth.minors) == {v.id for v in victims if minor_on(v.props["dob"], network.start)}
    assert len(truth.minors) < len(victims)


def test_locations_have_coordinates_near_the_city(network):
    places = network.by_kind("location")
    assert {p.props["location_type"] for p in places} >= {"motel", "apartment"}
    for p in places:
        assert abs(p.props["lat"] - 39.78) < 0.3 and abs(p.props["lon"] + 89.65) < 0.3


@pytest.mark.parametrize(("seed", "controllers"), [(7, 3), (1, 1), (2, 2), (3, 4), (4, 5)])
def test_controllers_are_the_top_key_players_by_betweenness(seed, controllers):
    network = generate(seed=seed, controllers=controllers, buyers=20 * controllers)
    truth = ground_truth(network)
    score = _betweenness(_adjacency(network))
    top = sorted(score, key=score.get, reverse=True)
    assert set(top[:controllers]) == set(truth.controllers)


def test_communities_are_the_cells(network):
    truth = ground_truth(network)
    adj = _adjacency(network)
    assert set(truth.communities) == set(network.entities)
    # Each cell holds together on its own.
    for cell in network.cells:
        members = {e for e, c in truth.communities.items() if c == cell.index}
        seen, queue = {cell.controller}, deque([cell.controller])
        while queue:
            for w in adj[queue.popleft()] & members:
                if w not in seen:
                    seen.add(w)
                    queue.append(w)
        assert seen == members
    # The partition is a strong one (modularity well above a random split's ~0).
    m = len({frozenset((lk.source, lk.target)) for lk in network.links})
    q = 0.0
    for c in {cell.index for cell in network.cells}:
        members = {e for e, k in truth.communities.items() if k == c}
        inside = sum(len(adj[v] & members) for v in members) / 2
        degree = sum(len(adj[v]) for v in members)
        q += inside / m - (degree / (2 * m)) ** 2
    assert q > 0.5
    # Bridges really tie their cells together.
    for eid, cells in truth.bridges.items():
        assert {truth.communities[n] for n in adj[eid]} >= set(cells)


def test_known_path_is_the_unique_shortest_path(network):
    truth = ground_truth(network)
    adj = _adjacency(network)
    path = truth.path
    assert path[0] == truth.path_source and path[-1] == truth.path_target
    assert network.entities[truth.path_source].props["role"] == "buyer"
    assert truth.path_target in truth.controllers
    for a, b in pairwise(path):
        assert b in adj[a]
    assert _shortest_paths(adj, truth.path_source, truth.path_target) == (len(path) - 1, 1)


# -- call records and bank records ------------------------------------------------------


def test_call_records_are_time_ordered_valid_and_consistent(network):
    rows = list(iter_call_records(network, 5000, seed=3))
    assert len(rows) == 5000
    assert rows == list(iter_call_records(network, 5000, seed=3))
    starts = [r.start for r in rows]
    assert starts == sorted(starts)
    assert network.start.isoformat() <= starts[0] and starts[-1] < (
        network.end.isoformat() + "T99")
    numbers = {e.props["number"]: e for e in network.by_kind("phone")}
    live = defaultdict(list)
    for link in network.links:
        if link.type in ("CALLED", "TEXTED") and link.source in network.entities:
            src, dst = network.entities[link.source], network.entities[link.target]
            if src.kind == dst.kind == "phone":
                key = frozenset((src.props["number"], dst.props["number"]))
                live[key].append((link.props["first_seen"], link.props["last_seen"]))
    burners = {network.entities[p].props["number"] for c in network.cells
               for p in c.burner_phones}
    from_links = to_burners = 0
    for r in rows:
        assert r.call_type in ("voice", "sms")
        assert r.duration_s >= 0 and (r.call_type == "voice" or r.duration_s == 0)
        assert r.caller in numbers or r.callee in numbers  # always someone in the network
        windows = live.get(frozenset((r.caller, r.callee)))
        if windows:
            day = r.start[:10]
            assert any(a <= day <= b for a, b in windows), r
            from_links += 1
            to_burners += bool({r.caller, r.callee} & burners)
    assert from_links > 0.8 * len(rows)  # the rest is noise
    assert to_burners > 0.6 * len(rows)  # mostly buyers and the controllers' burners
    for r in rows[:200]:
        assert normalize("phone", r.caller).value == r.caller
        assert normalize("phone", r.callee).value == r.callee
        datetime.fromisoformat(r.start)


def test_call_records_memory_does_not_grow_with_the_count(network):
    def peak(n: int) -> int:
        tracemalloc.start()
        try:
            for _ in iter_call_records(network, n, seed=5):
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(10_000), peak(50_000)
    assert large < 5 * 1024 * 1024
    assert large < 1.5 * small + 256 * 1024


def test_a_million_call_records_stream_in_bounded_memory():
    # tracemalloc makes a million rows take over a minute, so a fresh interpreter
    # measures its own peak resident memory instead: growth must stay under 50 MB.
    code = """
import json, resource
from taskforce.graph.synthetic import generate, iter_call_records
net = generate(seed=1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = 0
last = ""
for row in iter_call_records(net, 1_000_000, seed=2):
    n += 1
    assert row.start >= last
    last = row.start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": n, "growth_kb": after - before}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True, timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == 1_000_000
    assert result["growth_kb"] < 50 * 1024


def test_bank_records_are_date_ordered_and_consistent(network):
    rows = list(iter_bank_records(network, 3000, seed=4))
    assert len(rows) == 3000
    assert rows == list(iter_bank_records(network, 3000, seed=4))
    assert [r.date for r in rows] == sorted(r.date for r in rows)
    buyers = {e.props["name"].upper() for e in network.by_role("buyer")}
    directions = Counter(r.direction for r in rows)
    assert set(directions) == {"credit", "debit"}
    for r in rows:
        assert float(r.amount) > 0 and r.amount == f"{float(r.amount):.2f}"
        if r.memo == "ZELLE PAYMENT FROM":
            assert r.counterparty_name in buyers
            normalize("bank_account", r.counterparty_account)
    assert any(r.memo == "ATM CASH DEPOSIT" and 9000 <= float(r.amount) < 10000 for r in rows)


# -- the large graph ------------------------------------------------------------------


def test_large_graph_streams_exact_counts_deterministically():
    graph = generate_large(2_000, 10_000, seed=9)
    entities = list(graph.entities())
    links = list(graph.links())
    assert len(entities) == 2_000 and len(links) == 10_000
    assert len({e.id for e in entities}) == 2_000
    assert len({lk.id for lk in links}) == 10_000
    ids = {e.id for e in entities}
    assert all(lk.source in ids and lk.target in ids and lk.source != lk.target for lk in links)
    assert {lk.type for lk in links} <= set(LINK_TYPES)
    again = generate_large(2_000, 10_000, seed=9)
    assert [asdict(e) for e in again.entities()] == [asdict(e) for e in entities]
    assert [asdict(lk) for lk in islice(again.links(), 500)] == [asdict(x) for x in links[:500]]
    # Most links stay inside their community.
    community = {e.id: e.props["community"] for e in entities}
    inside = sum(community[lk.source] == community[lk.target] for lk in links)
    assert inside > 0.9 * len(links)


def test_large_graph_identifiers_pass_normalize_and_are_unique():
    graph = generate_large(20_000, 0, seed=2)
    keys = Counter()
    for entity in graph.entities():
        for kind, raw in entity.identifiers:
            keys[normalize(kind, raw).key] += 1
    duplicated = [k for k, n in keys.items() if n > 1]
    assert duplicated == []


def test_large_phone_numbers_are_valid_and_distinct_well_past_the_fiction_range():
    areas = len(valid_area_codes())
    assert areas > 300
    picks = [0, 1, areas * 100 - 1, areas * 100, 1_000_000, 3_000_000]
    numbers = [large_phone_number(k) for k in picks]
    assert len(set(numbers)) == len(numbers)
    for number in numbers:
        assert normalize("phone", number).value == number
    assert numbers[2][5:10] == "55501" and numbers[3][5:10] != "55501"


def test_large_graph_memory_is_flat():
    graph = generate_large(1_000_000, 5_000_000, seed=1)
    tracemalloc.start()
    try:
        for _ in islice(graph.links(), 30_000):
            pass
        for _ in islice(graph.entities(), 30_000):
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024
