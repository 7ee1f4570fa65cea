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
