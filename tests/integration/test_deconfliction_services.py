"""Deconfliction on the real services: the hit notice arrives at the real SMTP
server with the deconfliction number and no identifier in it; second-degree hits
are found through the real Neo4j, and only through the two sides' own links.

Each test runs on SQLite and on PostgreSQL (the integration parametrisation)."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from scripts import services
from taskforce.deconfliction import service
from taskforce.deconfliction.models import Hit
from taskforce.extensions import db
from tests.unit.test_deconfliction_world import build_world, ensure_deconfliction

pytestmark = pytest.mark.integration

PHONE_A = "(312) 555-0199"
PHONE_B = "312.555.0199"


# --------------------------------------------------------------------------- mail

class TestMail:
    @pytest.fixture()
    def app_environ(self, app_environ, smtp_service):
        return {**app_environ, **smtp_service.env(),
                "TASKFORCE_BASE_URL": "https://taskforce.example.gov"}

    def test_hit_notice_reaches_the_smtp_server_without_identifiers(self, app, smtp_service):
        app.config.setdefault("BASE_URL", "https://taskforce.example.gov")
        ensure_deconfliction(app)
        world = build_world()
        a, b, coord = (world.people[k].user for k in ("a", "b", "coordinator"))
        services.read_mail(smtp_service, count=0, timeout=0)  # start from an empty box
        service.register(actor=world.people["a"].actor, case_id=world.cases["A"],
                         identifiers=[("phone", PHONE_A),
                                      ("person", "Jon Smith|1990-04-12")])
        service.register(actor=world.people["b"].actor, case_id=world.cases["B"],
                         identifiers=[("phone", PHONE_B),
                                      ("person", "John Smyth|1990-04-12")])
        hits = db.session.scalars(select(Hit).order_by(Hit.id)).all()
        assert sorted(h.kind for h in hits) == ["exact", "possible"]
        for user in (a, b, coord):
            (msg,) = services.read_mail(
                smtp_service, timeout=15,
                match=lambda m, email=user.email: email in str(m["To"]))
            assert str(msg["To"]) == user.email  # one message per person: no shared list
            body = msg.get_content()
            text = str(msg["Subject"]) + "\n" + body
            for h in hits:
                assert h.number in text
                assert f"/deconfliction/hits/{h.id}" in body
            for leak in ("555", "0199", "Smith", "Smyth", "1990", "Nightjar", "Kestrel",
                         world.case("A").number, world.case("B").number, "Springfield",
                         "State Police", "phone", "person"):
                assert leak.lower() not in text.lower(), f"{leak!r} in the mail to {user}"


# --------------------------------------------------------------------------- second degree

class TestSecondDegree:
    @pytest.fixture()
    def app_environ(self, app_environ, neo4j_service):
        return {**app_environ, **neo4j_service.env()}

    @pytest.fixture()
    def graph(self, app):
        from taskforce.graph import client, projection

        projection.ensure_schema()  # as the outbox drain does: entity ids are index seeks
        projection.clear()
        yield projection
        projection.clear()
        client.close(app)

    @staticmethod
    def entity(case_ids, kind="phone", label="phone"):
        """An entity in these cases, as the graph service keeps it (rows only)."""
        from taskforce.graph.models import CaseEntity, Entity

        e = Entity(kind=kind)
        db.session.add(e)
        db.session.flush()
        for cid in case_ids:  # what a case says about it lives on its CaseEntity
            db.session.add(CaseEntity(case_id=cid, entity_id=e.id, label=label, props={}))
        db.session.commit()
        return e.id

    @staticmethod
    def project(graph, entities: dict[int, list[int]], links: list[tuple]):
        """The projection the outbox drain would write: nodes, then links
        (link id, source, target, case, count)."""
        graph.upsert_entities([{"id": f"ent-{eid}", "kind": "phone", "label": "x",
                                "cases": cases} for eid, cases in entities.items()])
        graph.upsert_links([{"id": f"lnk-{lid}", "type": "CALLED", "source": f"ent-{s}",
                             "target": f"ent-{t}", "cases": [case], "count": n,
                             "first_seen": "2025-01-01", "last_seen": "2025-03-01"}
                            for lid, s, t, case, n in links])

    def test_a_phone_one_call_away_from_another_agencys_target(self, app, graph):
        ensure_deconfliction(app)
        world = build_world()
        A, B, C = (world.cases[k] for k in "ABC")
        p1 = self.entity([A])  # A's new target phone
        p2 = self.entity([A, B])  # B's target; in A's call records too
        p3 = self.entity([C, A])  # C's target; linked to p1 only in C's... see below
        p4 = self.entity([A])  # linked, but nobody else registered it
        self.project(graph, {p1: [A], p2: [A, B], p3: [A, C], p4: [A]}, [
            (1, p1, p2, A, 40),  # in A's own case: counts
            (2, p1, p4, A, 3),
        ])
        service.register(actor=world.people["b"].actor, case_id=B,
                         identifiers=[("phone", PHONE_B)], entity_id=p2)
        service.register(actor=world.people["c"].actor, case_id=C,
                         identifiers=[("phone", "(312) 555-0142")], entity_id=p3)
        result = service.register(actor=world.people["a"].actor, case_id=A,
                                  identifiers=[("phone", "(312) 555-0123")], entity_id=p1)
        assert result.hits == []  # no exact match: second degree comes after the commit
        db.session.expire_all()
        hits = db.session.scalars(select(Hit)).all()
        assert [(h.kind, h.a_case_id, h.b_case_id) for h in hits] == [("second_degree", A, B)]
        assert hits[0].score == pytest.approx(0.9)
        view = service.get_hit(actor=world.people["b"].actor, hit_id=hits[0].id)
        assert view.own_sides == ("b",)

    def test_a_third_cases_link_tells_nobody(self, app, graph):
        ensure_deconfliction(app)
        world = build_world()
        A, B, C = (world.cases[k] for k in "ABC")
        p1 = self.entity([A, C])
        p2 = self.entity([B, C])
        self.project(graph, {p1: [A, C], p2: [B, C]}, [(1, p1, p2, C, 12)])  # C's link only
        service.register(actor=world.people["b"].actor, case_id=B,
                         identifiers=[("phone", PHONE_B)], entity_id=p2)
        service.register(actor=world.people["a"].actor, case_id=A,
                         identifiers=[("phone", "(312) 555-0123")], entity_id=p1)
        db.session.expire_all()
        assert db.session.scalars(select(Hit)).all() == []

    def test_a_link_in_the_other_case_found_when_links_change(self, app, graph):
        ensure_deconfliction(app)
        world = build_world()
        A, B = world.cases["A"], world.cases["B"]
        p1 = self.entity([A, B])
        p2 = self.entity([B])
        service.register(actor=world.people["a"].actor, case_id=A,
                         identifiers=[("phone", "(312) 555-0123")], entity_id=p1)
        service.register(actor=world.people["b"].actor, case_id=B,
                         identifiers=[("phone", PHONE_B)], entity_id=p2)
        assert db.session.scalars(select(Hit)).all() == []  # no link yet
        self.project(graph, {p1: [A, B], p2: [B]}, [(7, p2, p1, B, 2)])  # B's call records
        from taskforce.deconfliction import tasks

        numbers = tasks.second_degree_for_entities.delay([p2]).get()
        assert len(numbers) == 1
        hit = db.session.scalars(select(Hit)).one()
        assert hit.kind == "second_degree" and {hit.a_case_id, hit.b_case_id} == {A, B}

    # ------------------------------------------------------------------ batched reads
    def test_batched_second_degree_finds_what_one_at_a_time_finds(self, app, graph,
                                                                   monkeypatch):
        """The batched path (one UNWIND read per batch of (entity, case) pairs) against
        the one-entity-at-a-time reference, on a small network of three cases: links
        in either side's case, a third case's link, a weaker and a stronger link to
        the same neighbour, a confidence below 1, an unregistered neighbour, an entity
        in two cases, and a batch size small enough to need several reads."""
        from taskforce.deconfliction import blind, matching
        from taskforce.deconfliction.models import TargetRegistration

        ensure_deconfliction(app)
        world = build_world()
        A, B, C = (world.cases[k] for k in "ABC")
        cases = {"p1": [A], "p2": [A, B], "p3": [A, C], "p4": [A], "p5": [B], "p6": [C],
                 "p7": [B, C], "p8": [C]}
        ids = {name: self.entity(cs) for name, cs in cases.items()}
        e = ids.__getitem__
        graph.upsert_entities([{"id": f"ent-{e(n)}", "kind": "phone", "label": "x",
                                "cases": cs} for n, cs in cases.items()])
        links = [  # (id, source, target, case, count, confidence)
            (1, "p1", "p2", A, 40, 1.0),  # A's own: A <-> B
            (2, "p1", "p2", A, 2, 1.0),  # a weaker link to the same neighbour
            (3, "p1", "p4", A, 3, 1.0),  # p4: nobody else registered it
            (4, "p3", "p6", C, 5, 0.5),  # C's link: A's p3 and C's p6 ... p3 is C's too
            (5, "p5", "p7", B, 1, 1.0),  # B's link to p7 (B and C)
            (6, "p1", "p8", C, 9, 1.0),  # C's link, but p1 is not C's entity: not walked
            (7, "p6", "p8", C, 7, 0.8),  # within C only
        ]
        graph.upsert_links([{"id": f"lnk-{lid}", "type": "CALLED", "source": f"ent-{e(s)}",
                             "target": f"ent-{e(t)}", "cases": [case], "count": n,
                             "confidence": conf, "first_seen": "2025-01-01",
                             "last_seen": "2025-03-01"}
                            for lid, s, t, case, n, conf in links])
        owner = {"p1": ("a", A), "p2": ("b", B), "p3": ("a", A), "p5": ("b", B),
                 "p6": ("c", C), "p7": ("c", C), "p8": ("c", C)}
        for k, (name, (who, case)) in enumerate(owner.items()):
            service.register(actor=world.people[who].actor, case_id=case,
                             identifiers=[("phone", f"(312) 555-01{10 + k}")],
                             entity_id=e(name))
        ring = blind.keyring()
        at = service.now()
        regs = db.session.scalars(select(TargetRegistration)
                                  .order_by(TargetRegistration.id)).all()
        probes = [matching.Probe(kind=r.kind, value_key=r.value_key, registration_id=r.id,
                                 case_id=r.case_id, entity_id=r.entity_id) for r in regs]

        def seen(matches):
            return sorted((m.probe.registration_id, m.other.id, m.kind, m.score,
                           m.details["link_case_id"]) for m in matches)

        reference = seen(matching.second_degree_one_at_a_time(probes, ring=ring, now=at))
        reads = []
        real = matching._neighbours_batched
        monkeypatch.setattr(matching, "SECOND_DEGREE_BATCH", 3)
        monkeypatch.setattr(matching, "_neighbours_batched",
                            lambda pairs: reads.append(len(pairs)) or real(pairs))
        batched = seen(matching.second_degree(probes, ring=ring, now=at))
        assert batched == reference
        assert len(reads) > 1 and max(reads) <= 3  # several batches, each one read
        by_entity = {r.id: next(n for n in owner if e(n) == r.entity_id) for r in regs}
        pairs = {(by_entity[a], by_entity[b], score) for a, b, _, score, _ in batched}
        # p1 <-> p2 over A's link, the stronger of the two calls (40 calls: 0.9)
        assert ("p1", "p2", 0.9) in pairs and ("p2", "p1", 0.9) in pairs
        # p3 (A's registration; the entity is C's too) <-> p6 over C's link, halved
        assert ("p3", "p6", round(0.5 * min(0.9, 0.5 + 0.1 * 2.585), 3)) in {
            (a, b, round(s, 3)) for a, b, s in pairs}
        assert {(a, b) for a, b, _ in pairs} >= {("p5", "p7"), ("p7", "p5")}
        # never: the same case (p6 - p8, both C's), nor p1 - p8 (C's link, p1 not C's)
        assert not {(a, b) for a, b, _ in pairs} & {("p6", "p8"), ("p8", "p6"),
                                                     ("p1", "p8"), ("p8", "p1")}
