"""Throw-away timing (deleted after use)."""
import datetime as dt
import random
import time

import pytest

from taskforce.deconfliction import blind, matching, service
from taskforce.deconfliction.models import TargetRegistration
from taskforce.extensions import db
from tests.unit.test_deconfliction_world import build_world, ensure_deconfliction

pytestmark = pytest.mark.integration


@pytest.fixture()
def app_environ(app_environ, neo4j_service):
    return {**app_environ, **neo4j_service.env()}


def test_timing(app):
    from taskforce.graph import client, projection
    from taskforce.graph.models import CaseEntity, Entity

    projection.clear()
    ensure_deconfliction(app)
    world = build_world()
    A, B = world.cases["A"], world.cases["B"]
    n = 1000
    ents = [Entity(kind="phone") for _ in range(2 * n)]
    db.session.add_all(ents)
    db.session.flush()
    for i, e in enumerate(ents):
        db.session.add(CaseEntity(case_id=A if i < n else B, entity_id=e.id, label="x", props={}))
        if i >= n:
            db.session.add(CaseEntity(case_id=A, entity_id=e.id, label="x", props={}))
    ring = blind.keyring()
    at = service.now()
    regs = [TargetRegistration(kind="phone", value_key=ring.value_key("phone", f"+1312{i:07d}"),
                               scheme=ring.scheme,
                               agency_id=world.agencies["spd" if i < n else "isp"].id,
                               case_id=A if i < n else B, entity_id=e.id, poc_name="x",
                               expires_at=at + dt.timedelta(days=30))
            for i, e in enumerate(ents)]
    db.session.add_all(regs)
    db.session.commit()
    projection.upsert_entities([{"id": f"ent-{e.id}", "kind": "phone", "label": "x",
                                 "cases": [A] if i < n else [A, B]} for i, e in enumerate(ents)])
    rnd = random.Random(1)
    projection.upsert_links([{"id": f"lnk-{k}", "type": "CALLED",
                              "source": f"ent-{ents[rnd.randrange(n)].id}",
                              "target": f"ent-{ents[rnd.randrange(2 * n)].id}", "cases": [A],
                              "count": rnd.randrange(1, 50), "first_seen": "2025-01-01",
                              "last_seen": "2025-03-01"} for k in range(3 * n)])
    probes = [matching.Probe(kind=r.kind, value_key=r.value_key, registration_id=r.id,
                             case_id=r.case_id, entity_id=r.entity_id) for r in regs[:n]]
    pairs = [(f"ent-{e.id}", A) for e in ents[:200]]
    # profile
    import taskforce.graph.client as gc
    orig = gc.read
    captured = {}
    def cap(cypher, timeout=None, **params):
        captured["c"], captured["p"] = cypher, params
        return orig(cypher, timeout=timeout, **params)
    gc.read = cap
    for _ in range(3):
        t = time.perf_counter(); matching._neighbours_batched(pairs); print("read", time.perf_counter() - t)
    gc.read = orig
    with client.driver().session() as s:
        t = time.perf_counter()
        res = s.run("PROFILE " + captured["c"], **captured["p"]); summ = res.consume()
        print("raw session", time.perf_counter() - t)
        def walk(p, d=0):
            print("  " * d, p.get("operatorType"), p.get("dbHits"), p.get("rows"))
            for c in p.get("children", []): walk(c, d + 1)
        walk(summ.profile)
    t0 = time.perf_counter()
    one = matching.second_degree_one_at_a_time(probes, ring=ring, now=at)
    t1 = time.perf_counter()
    bat = matching.second_degree(probes, ring=ring, now=at)
    t2 = time.perf_counter()
    key = lambda ms: sorted((m.probe.registration_id, m.other.id, m.score) for m in ms)  # noqa: E731
    print(f"\nTIMING probes={n} one_at_a_time={t1 - t0:.2f}s batched={t2 - t1:.2f}s "
          f"matches={len(one)} same={key(one) == key(bat)}")
    assert key(one) == key(bat)
    projection.clear()
    client.close(app)
