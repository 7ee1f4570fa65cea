"""Bulk registration (service.register_many, bulk.py: what an import registers) and
the index's 64-bit key: new rows, idempotent renewal, hits, the entities' check, and
a forced key64 collision that must neither merge two values nor miss either.

Unit tests run on SQLite (bulk.load's careful path); the PostgreSQL COPY path is
tested in tests/integration/test_deconfliction_services.py."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from taskforce.audit.models import AuditEvent
from taskforce.deconfliction import blind, bulk, service
from taskforce.deconfliction.models import Hit, PersonBlock, TargetRegistration
from taskforce.errors import Invalid, NotFound
from taskforce.extensions import db
from taskforce.graph.identifiers import normalize
from tests.unit.test_deconfliction_world import build_world, ensure_deconfliction

PHONE_A = "(312) 555-0199"
PHONE_B = "312.555.0199"
# two phones made to share one key64 by the forced_collision fixture
P1, P2 = "(312) 555-0111", "(312) 555-0122"
V1, V2 = normalize("phone", P1).value, normalize("phone", P2).value
SHARED_KEY64 = 4242


@pytest.fixture()
def world(app):
    ensure_deconfliction(app)
    return build_world()


@pytest.fixture()
def mails(monkeypatch):
    """What reaches the relay (send_mail patched: none in unit tests), after the commit."""
    from taskforce.mail import service as mail

    sent: list = []
    monkeypatch.setattr(mail, "send_mail", lambda *, to, subject, body: sent.append(list(to)))
    return sent


@pytest.fixture(params=[False, True], ids=["plain", "blind"])
def forced_collision(request, app, monkeypatch):
    """MONKEYPATCHED prefix function (blind.key64): P1 and P2 share SHARED_KEY64, a
    64-bit collision that real keys make ~2.7e-6 likely with 10M identifiers in one
    case. Runs with the blind index off and on."""
    app.config["DECONFLICTION_BLIND_INDEX"] = request.param
    blind.reset(app)
    ring = blind.keyring(app)
    colliding = {ring.value_key("phone", V1), ring.value_key("phone", V2)}
    real = blind.key64
    monkeypatch.setattr(blind, "key64", lambda kind, value_key, blind_on: SHARED_KEY64
                        if kind == "phone" and value_key in colliding
                        else real(kind, value_key, blind_on))
    yield ring
    app.config["DECONFLICTION_BLIND_INDEX"] = None
    blind.reset(app)


def many(world, who: str, case: str, identifiers, **kw) -> service.BulkRegisterResult:
    return service.register_many(actor=world.people[who].actor, case_id=world.cases[case],
                                 identifiers=list(identifiers), **kw)


def one(world, who: str, case: str, *identifiers) -> service.RegisterResult:
    return service.register(actor=world.people[who].actor, case_id=world.cases[case],
                            identifiers=list(identifiers))


def rows(case_id: int | None = None) -> list[TargetRegistration]:
    query = select(TargetRegistration).order_by(TargetRegistration.id)
    if case_id is not None:
        query = query.where(TargetRegistration.case_id == case_id)
    return list(db.session.scalars(query))


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


# --------------------------------------------------------------------------- register_many

def test_register_many_writes_rows_like_register_and_finds_hits(world, mails):
    first = many(world, "b", "B", [("phone", PHONE_B), ("person", "John Smyth|1990-04-12")])
    assert (first.created, first.renewed, first.hits) == (2, 0, [])
    result = many(world, "a", "A", [("phone", PHONE_A), ("phone", "(312) 555-0142"),
                                    ("person", "Jon Smith|1990-04-12"), ("phone", PHONE_B)])
    assert result.created == 3  # PHONE_B is PHONE_A: kept once
    assert len(result.registration_ids) == 3
    assert sorted((h.kind, h.a_case_id, h.b_case_id) for h in result.hits) == [
        ("exact", world.cases["A"], world.cases["B"]),
        ("possible", world.cases["A"], world.cases["B"])]
    mine = rows(world.cases["A"])
    assert {r.id for r in mine} == set(result.registration_ids)
    ring = blind.keyring()
    for r in mine:  # what register writes: the key and its prefix, the contact, the blocks
        assert r.key64 == ring.key64(r.kind, r.value_key) and r.key_slot == 0
        assert r.poc_name == world.people["a"].user.full_name
        assert r.expires_at > service.now() + timedelta(days=700)
    person = next(r for r in mine if r.kind == "person")
    assert db.session.scalar(select(func.count()).select_from(PersonBlock).where(
        PersonBlock.registration_id == person.id)) > 0
    assert mails  # hits notify as register's do
    audits = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "deconfliction.register",
        AuditEvent.case_id == world.cases["A"])).all()
    assert len(audits) == 1 and json.loads(audits[0].details)["bulk"] is True


def test_register_many_renews_what_is_there_and_register_agrees(world, monkeypatch):
    start = service.now()
    made = many(world, "a", "A", [("phone", PHONE_A), ("email", "x@example.com")])
    monkeypatch.setattr(service, "now", lambda: start + timedelta(days=100))
    again = many(world, "a", "A", [("phone", PHONE_B), ("email", "X@example.com"),
                                   ("phone", "(312) 555-0142")])
    assert (again.created, again.renewed) == (1, 2)
    assert again.registration_ids[:2] == made.registration_ids
    renewed = db.session.get(TargetRegistration, made.registration_ids[0])
    assert renewed.expires_at > start + timedelta(days=800)  # pushed out from day 100
    single = one(world, "a", "A", ("phone", "(312) 555-0142"))
    assert (single.created, single.renewed) == (0, 1)
    assert count(TargetRegistration) == 3  # never twice


def test_a_registration_back_from_expiry_is_checked_again(world, monkeypatch):
    start = service.now()
    many(world, "a", "A", [("phone", PHONE_A)])
    monkeypatch.setattr(service, "now", lambda: start + timedelta(days=731))
    many(world, "b", "B", [("phone", PHONE_B)])  # A's has expired: no hit
    assert count(Hit) == 0
    back = many(world, "a", "A", [("phone", PHONE_A)])
    assert back.renewed == 1 and [h.kind for h in back.hits] == ["exact"]


def test_register_many_entities_must_be_in_the_case_and_access_is_checked(world):
    from taskforce.graph.models import CaseEntity, Entity

    e = Entity(kind="phone")
    db.session.add(e)
    db.session.flush()
    db.session.add(CaseEntity(case_id=world.cases["B"], entity_id=e.id, label="x", props={}))
    db.session.commit()
    key = normalize("phone", PHONE_A).key
    with pytest.raises(Invalid) as err:
        many(world, "a", "A", [("phone", PHONE_A)], entity_ids={key: e.id})
    assert "entity_ids" in err.value.fields
    with pytest.raises(NotFound):
        many(world, "a", "B", [("phone", PHONE_A)])  # not A's lead's case
    assert count(TargetRegistration) == 0
    made = many(world, "b", "B", [("phone", PHONE_A)], entity_ids={key: e.id})
    assert db.session.get(TargetRegistration, made.registration_ids[0]).entity_id == e.id


def test_bulk_prepare_escapes_copy_text_and_drops_repeats():
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    stamp = bulk.Stamp(registered_at=now, expires_at=now)
    who = bulk.Contact(user_id=None, name="O'Hara\tDesk\\2", email="a@example.gov")
    entries = [bulk.Entry("phone", "+13125550199", 1, 1, who, display="tab\there"),
               bulk.Entry("phone", "+13125550199", 1, 1, who),  # a repeat
               bulk.Entry("phone", "+13125550199", 2, 1, who)]  # another case
    p = bulk.prepare(entries, blind.Keyring(False), stamp)
    assert len(p) == 2 and p.row_of[0] == p.row_of[1] != p.row_of[2]
    line = p.tail[p.row_of[0]]
    assert line.endswith("\n") and line.count("\n") == 1
    assert "tab\\there" in line and "O'Hara\\tDesk\\\\2" in line
    assert len(line.rstrip("\n").split("\t")) == len(bulk.REG_COLUMNS) - 1  # all but id


# --------------------------------------------------------------------------- key64 collision

def test_forced_key64_collision_neither_merges_nor_misses(world, forced_collision,
                                                          monkeypatch):
    ring = forced_collision
    assert ring.key64("phone", ring.value_key("phone", V1)) == SHARED_KEY64 == ring.key64(
        "phone", ring.value_key("phone", V2))
    A = world.cases["A"]
    one(world, "a", "A", ("phone", P1))
    one(world, "a", "A", ("phone", P2))  # same case, same key64, another value
    a_rows = rows(A)
    assert [(r.key64, r.key_slot) for r in a_rows] == [(SHARED_KEY64, 0), (SHARED_KEY64, 1)]
    a1, a2 = (r.id for r in a_rows)

    # B registers P2 (bulk): one hit, with A's P2, not A's P1
    b = many(world, "b", "B", [("phone", P2)])
    assert [(h.kind, h.b_registration_id) for h in b.hits] == [("exact", a2)]
    # C registers P1 (one by one): one hit, with A's P1
    c = one(world, "c", "C", ("phone", P1))
    assert [(h.kind, h.b_registration_id) for h in c.hits] == [("exact", a1)]
    checked = service.check_only(actor=world.people["a2"].actor, identifiers=[("phone", P1)])
    assert sorted(m.other.id for m in checked.matches) == sorted([a1, c.registrations[0].id])

    # entering both again renews, by either path: no duplicate
    again = many(world, "a", "A", [("phone", P2), ("phone", P1)])
    assert (again.created, again.renewed) == (0, 2) and again.registration_ids == [a2, a1]
    assert one(world, "a", "A", ("phone", P1)).created == 0
    assert len(rows(A)) == 2

    # two colliding new values in one bulk call take slots 0 and 1
    fresh = many(world, "a2", "A2", [("phone", P1), ("phone", P2)])
    assert fresh.created == 2
    assert sorted(r.key_slot for r in rows(world.cases["A2"])) == [0, 1]

    # the purge closes the gap a deletion leaves: A's P1 (slot 0) expires, P2 moves to 0
    start = service.now()
    monkeypatch.setattr(service, "now", lambda: start + timedelta(days=300))
    one(world, "a", "A", ("phone", P2))  # renewed: lives on
    for r in rows():
        if r.id != a2:
            r.expires_at = start + timedelta(days=1)
    db.session.commit()
    expired = len(rows()) - 1
    assert service.purge_expired() == expired
    assert [(r.id, r.key_slot) for r in rows()] == [(a2, 0)]
    # ... so P2 again is still a renewal (a slot-0 insert would have collided), and
    # P1 again is new, next to it
    assert many(world, "a", "A", [("phone", P2)]).renewed == 1
    assert many(world, "a", "A", [("phone", P1)]).created == 1
    assert sorted((r.value_key == ring.value_key("phone", V1), r.key_slot)
                  for r in rows(A)) == [(False, 0), (True, 1)]


# --------------------------------------------------------------------------- merged entities

def test_own_identifier_is_shown_through_a_merge_when_blind(app, world):
    """A blind registration shows its own side the identifier from the graph; after a
    merge the identifier belongs to the kept entity, and the display follows it."""
    from taskforce.graph.models import CaseEntity, Entity
    from taskforce.graph.models import Identifier as GraphIdentifier

    app.config["DECONFLICTION_BLIND_INDEX"] = True
    blind.reset(app)
    try:
        gone, kept = Entity(kind="phone"), Entity(kind="phone")
        db.session.add_all([gone, kept])
        db.session.flush()
        db.session.add(CaseEntity(case_id=world.cases["A"], entity_id=gone.id, label="x",
                                  props={}))
        ident = GraphIdentifier(entity_id=gone.id, kind="phone",
                                value=normalize("phone", PHONE_A).value, display=PHONE_A)
        db.session.add(ident)
        db.session.commit()
        rid = one_with_entity(world, gone.id)
        assert service.own_identifier_display(rid) == PHONE_A
        ident.entity_id, gone.merged_into_id = kept.id, kept.id  # what the merge does
        db.session.commit()
        assert db.session.get(TargetRegistration, rid).entity_id == gone.id
        assert service.own_identifier_display(rid) == PHONE_A
        gone.merged_into_id = None  # the merge undone, the identifier elsewhere: not shown
        db.session.commit()
        assert service.own_identifier_display(rid) is None
    finally:
        app.config["DECONFLICTION_BLIND_INDEX"] = None
        blind.reset(app)


def one_with_entity(world, entity_id: int) -> int:
    return service.register(actor=world.people["a"].actor, case_id=world.cases["A"],
                            identifiers=[("phone", PHONE_A)],
                            entity_id=entity_id).registrations[0].id


def test_load_parallel_in_process_on_sqlite(app, world):
    """Without workers the batches load in this process (SQLite: the careful path,
    which also makes a second load of the same batches renew, not duplicate)."""
    from functools import partial

    who = bulk.Contact(user_id=None, name="Records desk", email="desk@example.gov")
    case, agency = world.cases["A"], world.case("A").agency_id
    at = service.now()
    stamp = bulk.Stamp(registered_at=at, expires_at=at + timedelta(days=30))
    sources = [partial(phones, s, case, agency, who) for s in (0, 50, 100)]
    out = bulk.load_parallel(db.engine, sources, ring=blind.keyring(), stamp=stamp)
    assert (out["rows"], out["created"], out["careful_batches"]) == (150, 150, 3)
    again = bulk.load_parallel(db.engine, sources, ring=blind.keyring(), stamp=stamp)
    assert (again["created"], again["renewed"]) == (0, 150)
    assert count(TargetRegistration) == 150


def phones(start: int, case: int, agency: int, who) -> list:
    return [bulk.Entry("phone", f"+1312555{n:04d}", case, agency, who)
            for n in range(start, start + 50)]


def test_blind_bulk_rows_hold_tags_only_and_match_like_registers(app, world):
    from taskforce.deconfliction import matching

    app.config["DECONFLICTION_BLIND_INDEX"] = True
    blind.reset(app)
    try:
        ring = blind.keyring()
        made = many(world, "a", "A", [("person", "Jon Smith|1990-04-12"), ("phone", PHONE_A)])
        person = next(r for r in rows(world.cases["A"]) if r.kind == "person")
        tokens, dob = matching.person_parts(normalize("person", "Jon Smith|1990-04-12").value)
        assert person.sketch == matching.person_sketch(tokens, dob, ring)
        assert all(r.display_hint is None and len(r.value_key) == 64 for r in rows())
        hits = one(world, "b", "B", ("person", "John Smyth|1990-04-12"), ("phone", PHONE_B)).hits
        assert sorted((h.kind, h.b_registration_id) for h in hits) == sorted(
            [("possible", person.id), ("exact", next(
                i for i in made.registration_ids if i != person.id))])
    finally:
        app.config["DECONFLICTION_BLIND_INDEX"] = None
        blind.reset(app)
