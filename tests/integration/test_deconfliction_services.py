"""Deconfliction on the real services: the hit notice arrives at the real SMTP
server with the deconfliction number and no identifier in it; second-degree hits
are found through the real Neo4j, and only through the two sides' own links, also
for registrations of entities a merge absorbed; bulk registration's COPY path.

Each test runs on SQLite and on PostgreSQL (the integration parametrisation); the
COPY tests on PostgreSQL only."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
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

    # ------------------------------------------------------------------ merged entities
    def test_a_registration_of_an_absorbed_entity_follows_the_merge_and_back(self, app,
                                                                             graph):
        """Registrations keep the entity id they were made with; after a merge that
        entity is gone from the graph (the kept one has its links and cases). The
        second-degree check reads an absorbed entity as the one it was merged into,
        on both sides of a match, and as itself again after the unmerge (rows and
        projection as merge_entities / unmerge_entities and the outbox leave them)."""
        from taskforce.deconfliction import blind, matching
        from taskforce.deconfliction.models import TargetRegistration
        from taskforce.graph.models import Entity

        ensure_deconfliction(app)
        world = build_world()
        A, B = world.cases["A"], world.cases["B"]
        a_old, a_kept = self.entity([A]), self.entity([A])  # A's target phone, twice
        b_old, b_kept = self.entity([B]), self.entity([A, B])  # B's target; in A's records
        reg_a = service.register(actor=world.people["a"].actor, case_id=A,
                                 identifiers=[("phone", "(312) 555-0123")],
                                 entity_id=a_old).registrations[0].id
        reg_b = service.register(actor=world.people["b"].actor, case_id=B,
                                 identifiers=[("phone", PHONE_B)],
                                 entity_id=b_old).registrations[0].id
        ring, at = blind.keyring(), service.now()

        def found() -> set[tuple[int, int]]:
            regs = db.session.scalars(select(TargetRegistration).where(
                TargetRegistration.id.in_([reg_a, reg_b]))).all()
            probes = [matching.Probe(kind=r.kind, value_key=r.value_key, registration_id=r.id,
                                     case_id=r.case_id, entity_id=r.entity_id) for r in regs]
            return {(m.probe.registration_id, m.other.id)
                    for m in matching.second_degree(probes, ring=ring, now=at)}

        # merged: a_old into a_kept, b_old into b_kept; only the kept ones are in the
        # graph, linked by A's call records
        for old, kept in ((a_old, a_kept), (b_old, b_kept)):
            db.session.get(Entity, old).merged_into_id = kept
        db.session.commit()
        self.project(graph, {a_kept: [A], b_kept: [A, B]}, [(1, a_kept, b_kept, A, 40)])
        assert matching.resolve_merged([a_old, b_old, a_kept]) == {
            a_old: a_kept, b_old: b_kept, a_kept: a_kept}
        assert found() == {(reg_a, reg_b), (reg_b, reg_a)}  # neither id is in the graph
        assert db.session.scalars(select(TargetRegistration.entity_id).where(
            TargetRegistration.id.in_([reg_a, reg_b]))).all() == [a_old, b_old]  # unchanged

        # the check after a link change of the kept entity covers the absorbed one's
        # registration too
        hits = service.second_degree_for_entities(entity_ids=[b_kept])
        assert [(h.kind, {h.a_registration_id, h.b_registration_id}) for h in hits] == [
            ("second_degree", {reg_a, reg_b})]

        # unmerged: each is itself again; the link is the kept one's, so no match
        for old in (a_old, b_old):
            db.session.get(Entity, old).merged_into_id = None
        db.session.commit()
        self.project(graph, {a_old: [A], b_old: [B]}, [])
        assert matching.resolve_merged([a_old, b_old]) == {a_old: a_old, b_old: b_old}
        assert found() == set()
        # and a link of their own counts again, by their own ids
        self.project(graph, {a_old: [A], b_old: [A, B]}, [(2, a_old, b_old, A, 3)])
        assert (reg_a, reg_b) in found()

    def test_merges_of_merges_resolve_to_the_last_kept_entity(self, app):
        from taskforce.deconfliction import matching
        from taskforce.graph.models import Entity

        ensure_deconfliction(app)
        world = build_world()
        e1, e2, e3 = (self.entity([world.cases["A"]]) for _ in range(3))
        db.session.get(Entity, e1).merged_into_id = e2
        db.session.get(Entity, e2).merged_into_id = e3
        db.session.commit()
        assert matching.resolve_merged([e1, e2, e3]) == {e1: e3, e2: e3, e3: e3}
        assert matching.absorbed_into([e3]) == {e3: {e1, e2, e3}}


# --------------------------------------------------------------------------- bulk on PostgreSQL

def batch_of_entries(start: int, case: int, agency: int, who) -> list:
    """99 phones and a person: a source for bulk.load_parallel (module level, so a
    worker process can be handed it)."""
    from taskforce.deconfliction import bulk

    return [bulk.Entry("phone", f"+1312555{n:04d}", case, agency, who)
            for n in range(start, start + 99)] + [
        bulk.Entry("person", f"JOHN|SMITH{'ABCDE'[start // 100]}|1990-04-12", case, agency,
                   who)]


@pytest.mark.postgresql_only  # COPY and its savepoint exist on PostgreSQL only
class TestBulkCopy:
    @pytest.fixture()
    def copies(self, monkeypatch):
        """A SPY on bulk._copy_all_new (the real function runs): what each call gave,
        True when the COPY fast path loaded the batch, False when it fell back."""
        from taskforce.deconfliction import bulk

        seen: list[bool] = []
        real = bulk._copy_all_new
        monkeypatch.setattr(bulk, "_copy_all_new", lambda conn, p, **kw: seen.append(
            (out := real(conn, p, **kw)) is not None) or out)
        return seen

    def test_new_rows_go_in_by_copy_and_a_repeat_falls_back_to_renewing(self, app, copies):
        from taskforce.deconfliction.models import PersonBlock, TargetRegistration

        ensure_deconfliction(app)
        world = build_world()
        ids = [("phone", PHONE_A), ("person", "Jon Smith|1990-04-12"),
               ("email", "x@example.com")]
        made = service.register_many(actor=world.people["a"].actor, case_id=world.cases["A"],
                                     identifiers=ids)
        assert copies == [True] and made.created == 3
        blocks = db.session.scalar(select(sa.func.count()).select_from(PersonBlock))
        assert blocks > 0
        again = service.register_many(actor=world.people["a"].actor,
                                      case_id=world.cases["A"], identifiers=ids)
        assert copies == [True, False]  # taken: the savepoint undid the COPY
        assert (again.created, again.renewed) == (0, 3)
        assert again.registration_ids == made.registration_ids
        assert db.session.scalar(select(sa.func.count()).select_from(TargetRegistration)) == 3
        assert db.session.scalar(select(sa.func.count()).select_from(PersonBlock)) == blocks
        hit = service.register_many(actor=world.people["b"].actor, case_id=world.cases["B"],
                                    identifiers=[("phone", PHONE_B)]).hits
        assert copies[-1] is True and [h.kind for h in hit] == ["exact"]

    def test_forced_key64_collision_on_the_copy_path(self, app, copies, monkeypatch):
        """MONKEYPATCHED prefix function (blind.key64): two phones share one key64. The
        second one's slot-0 COPY collides with the first; the careful path gives it
        slot 1; a check finds each value's registration only."""
        from taskforce.deconfliction import blind
        from taskforce.deconfliction.models import TargetRegistration
        from taskforce.graph.identifiers import normalize

        ensure_deconfliction(app)
        world = build_world()
        v1, v2 = (normalize("phone", p).value for p in ("(312) 555-0111", "(312) 555-0122"))
        real = blind.key64
        monkeypatch.setattr(blind, "key64", lambda kind, vk, on: 77 if vk in (v1, v2)
                            else real(kind, vk, on))
        A = world.cases["A"]
        first = service.register_many(actor=world.people["a"].actor, case_id=A,
                                      identifiers=[("phone", v1)])
        second = service.register_many(actor=world.people["a"].actor, case_id=A,
                                       identifiers=[("phone", v2)])
        assert copies == [True, False] and second.created == 1
        slots = dict(db.session.execute(select(TargetRegistration.id,
                                               TargetRegistration.key_slot)).all())
        assert slots == {first.registration_ids[0]: 0, second.registration_ids[0]: 1}
        for value, mine in ((v1, first), (v2, second)):
            found = service.check_only(actor=world.people["b"].actor,
                                       identifiers=[("phone", value)])
            assert [m.other.id for m in found.matches] == mine.registration_ids

    def test_load_parallel_loads_batches_in_worker_processes(self, app):
        from functools import partial

        from taskforce.deconfliction import blind, bulk
        from taskforce.deconfliction.models import TargetRegistration

        ensure_deconfliction(app)
        world = build_world()
        who = bulk.Contact(user_id=None, name="Records desk", email="desk@example.gov")
        case, agency = world.cases["A"], world.case("A").agency_id

        at = service.now()
        stamp = bulk.Stamp(registered_at=at, expires_at=at + timedelta(days=30))
        sources = [partial(batch_of_entries, s, case, agency, who) for s in range(0, 500, 100)]
        out = bulk.load_parallel(db.engine, sources, ring=blind.keyring(), stamp=stamp,
                                 workers=2)
        assert (out["rows"], out["created"], out["fast_batches"]) == (500, 500, 5)
        # no ids were reserved: the blocks found their rows by (key64, case)
        persons = db.session.scalars(select(TargetRegistration).where(
            TargetRegistration.kind == "person")).all()
        assert len(persons) == 5 and all(p.blocks for p in persons)
        assert out["blocks"] == sum(len(p.blocks) for p in persons)
        again = bulk.load_parallel(db.engine, sources[:2], ring=blind.keyring(), stamp=stamp)
        assert (again["created"], again["renewed"], again["careful_batches"]) == (0, 200, 2)
        assert db.session.scalar(select(sa.func.count()).select_from(TargetRegistration)) == 500


def test_a_deleted_case_takes_its_registrations_along(app):
    """case_id has no foreign key (on PostgreSQL a bulk load paid for its check per
    row); a trigger on cases deletes the registrations instead."""
    from taskforce.deconfliction.models import PersonBlock, TargetRegistration

    ensure_deconfliction(app)
    world = build_world()
    for who, case, phone in (("a", "A", "(312) 555-0111"), ("b", "B", "(312) 555-0122")):
        service.register_many(actor=world.people[who].actor, case_id=world.cases[case],
                              identifiers=[("phone", phone),
                                           ("person", "Jon Smith|1990-04-12")])
    doomed = world.cases["A"]
    with db.engine.begin() as conn:  # as an administrator would, in SQL
        conn.execute(sa.text("DELETE FROM case_members WHERE case_id = :c"), {"c": doomed})
        conn.execute(sa.text("DELETE FROM hits WHERE a_case_id = :c OR b_case_id = :c"),
                     {"c": doomed})
        conn.execute(sa.text("DELETE FROM cases WHERE id = :c"), {"c": doomed})
    db.session.expire_all()
    left = db.session.scalars(select(TargetRegistration.case_id)).all()
    assert left and set(left) == {world.cases["B"]}
    assert {b.registration.case_id for b in db.session.scalars(select(PersonBlock))} == {
        world.cases["B"]}


@pytest.mark.postgresql_only
def test_key64_in_sql_is_the_services(app):
    """The expressions blind.key64's docstring gives for SQL (a migration backfilling
    key64 uses them) give what the service writes, blind and plain."""
    from taskforce.deconfliction import blind

    tagged = blind.Keyring(True, b"k" * 32)
    plain = blind.Keyring(False)
    for kind, value in (("phone", "+13125550199"), ("email", "x@example.com"),
                        ("person", "JOHN|SMITH|1990-04-12"), ("phone", "+19995550100")):
        tag = tagged.value_key(kind, value)
        from_tag, from_value = db.session.execute(sa.text(
            "SELECT ('x' || substr(:tag, 1, 16))::bit(64)::bigint,"
            " ('x' || substr(encode(sha256(convert_to(:kind || '|' || :value, 'UTF8')),"
            " 'hex'), 1, 16))::bit(64)::bigint"), {"tag": tag, "kind": kind, "value": value}).one()
        assert from_tag == tagged.key64(kind, tag)
        assert from_value == plain.key64(kind, value)
