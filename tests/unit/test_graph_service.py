"""Entities, identifiers and links through the service, on SQLite, with Neo4j
unreachable: every write still succeeds and its outbox rows wait.

Covers: one identifier = one entity (across spellings and cases), normalization,
need to know, survivor pseudonyms and who may see through them, the minor flag,
bad input (422, nothing written), link merging, the outbox written in the
change's own transaction, and the drain failing softly.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from taskforce.accounts.permissions import Actor
from taskforce.audit import service as audit_service
from taskforce.audit.models import AuditEvent
from taskforce.errors import Conflict, Forbidden, Invalid, NotFound
from taskforce.extensions import db
from taskforce.graph import outbox, policy, schemas, service
from taskforce.graph.models import CaseEntity, Entity, GraphOutbox, Identifier, Link
from taskforce.investigations import service as cases
from taskforce.investigations.models import Case
from tests import factories_graph
from tests.factories_graph import (
    add_person,
    add_phone,
    count,
    counts,
    pending_outbox,
    years_ago,
)
from tests.factories_investigations import make_case, person

# shared fixtures (tests/factories_graph.py): Neo4j unreachable, the graph registered, a team
neo4j_down_environ = factories_graph.neo4j_down_environ
graph_registered = factories_graph.graph_registered
team_fixture = factories_graph.team_fixture


PSEUDONYM = re.compile(r"Survivor-[2-9A-HJKMNP-TV-Z]{4,8}")


# One identifier, one entity -----------------------------------------------------------

def test_the_same_phone_entered_twice_in_any_spelling_is_one_entity(app, team):
    lead = team.lead[1]
    first = add_phone(lead, team.case_id, "(312) 555-0199")
    again = add_phone(lead, team.case_id, "+1 312.555.0199")
    assert again.id == first.id
    assert count(Entity) == 1 and count(Identifier) == 1 and count(CaseEntity) == 1
    ident = db.session.scalars(select(Identifier)).one()
    assert (ident.kind, ident.value) == ("phone", "+13125550199")
    # defaults to the identifier as displayed
    assert first.in_case(team.case_id).label == "+1 312-555-0199"


def test_an_identifier_entered_in_a_second_case_attaches_the_existing_entity(app, team):
    first = add_phone(team.lead[1], team.case_id, "312-555-0142")
    _, other = person(agency=team.other_agency)
    other_case = make_case(other, title="Operation Wren")
    again = add_phone(other, other_case, "3125550142", label="burner")
    assert again.id == first.id
    assert count(Entity) == 1
    assert sorted(ce.case_id for ce in db.session.scalars(select(CaseEntity))) == sorted(
        [team.case_id, other_case])
    shared = db.session.get(Entity, first.id)
    assert shared.in_case(team.case_id).label != "burner"  # another case's entry kept
    assert shared.in_case(other_case).label == "burner"  # each case its own words
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "entity.attach")
                               ).one()
    assert audit.case_id == other_case


@pytest.mark.parametrize("kind,raw,value", [
    ("email", "John.Smith+ads@GoogleMail.com", "johnsmith@gmail.com"),
    ("vehicle", "tx:abc 1234", "TX:ABC1234"),
    ("bank_account", "021000021:123456789", "021000021:123456789"),
])
def test_identifiers_are_normalized_before_they_are_stored(app, team, kind, raw, value):
    ident_kind = {"email": "email", "vehicle": "vehicle_plate",
                  "bank_account": "bank_account"}[kind]
    entity = service.add_entity(actor=team.lead[1], case_id=team.case_id, kind=kind,
                                identifiers=[{"kind": ident_kind, "value": raw}])
    assert [(i.kind, i.value) for i in entity.identifiers] == [(ident_kind, value)]


def test_new_identifiers_join_the_existing_entity(app, team):
    lead = team.lead[1]
    car = service.add_entity(actor=lead, case_id=team.case_id, kind="vehicle",
                             identifiers=[("vehicle_plate", "TX:ABC1234")],
                             props={"make": "Honda"})
    same = service.add_entity(actor=lead, case_id=team.case_id, kind="vehicle",
                              identifiers=[("vehicle_plate", "TX ABC 1234".replace(" ", ":", 1)),
                                           ("vin", "1HGCM82633A004352")],
                              props={"make": "Toyota", "color": "grey"})
    assert same.id == car.id
    assert sorted(i.kind for i in same.identifiers) == ["vehicle_plate", "vin"]
    # filled in, never overwritten
    assert same.in_case(team.case_id).props == {"make": "Honda", "color": "grey"}


def test_identifiers_of_two_different_entities_cannot_make_a_third(app, team):
    lead = team.lead[1]
    add_phone(lead, team.case_id, "312-555-0101")
    add_phone(lead, team.case_id, "312-555-0102")
    before = counts()
    with pytest.raises(Invalid) as err:
        service.add_entity(actor=lead, case_id=team.case_id, kind="phone",
                           identifiers=[("phone", "312-555-0101"), ("phone", "312-555-0102")])
    assert "identifiers" in err.value.fields
    assert counts() == before


# Bad input: 422 with fields, nothing written -------------------------------------------

@pytest.mark.parametrize("kwargs,field,reason", [
    ({"kind": "phone", "identifiers": [("fax", "312-555-0199")]},
     "identifiers.0.kind", "unknown identifier kind"),
    ({"kind": "phone", "identifiers": [("phone", "555-0199")]},
     "identifiers.0.value", "not a valid phone number"),
    ({"kind": "phone", "identifiers": [("email", "a@example.com")]},
     "identifiers.0.kind", "cannot carry"),
    ({"kind": "spaceship", "label": "x"}, "kind", "Must be one of"),
    ({"kind": "phone"}, "label", "Required"),
    ({"kind": "phone", "label": "x", "case_role": "victim"}, "case_role", "Only a person"),
    ({"kind": "person", "label": "x", "case_role": "hostage"}, "case_role", "Must be one of"),
    ({"kind": "person", "label": "x", "props": {"dob": "2090-01-01"}}, "props.dob",
     "not plausible"),
    ({"kind": "person", "label": "x", "props": {"shoe": 9}}, "props.shoe", "Not a detail"),
    ({"kind": "location", "label": "x", "props": {"lat": 95, "lon": 0}}, "props.lat",
     "from -90 to 90"),
    ({"kind": "phone", "label": "x", "identifiers": "312-555-0199"}, "identifiers", "list"),
])
def test_bad_entity_input_is_invalid_and_writes_nothing(app, team, kwargs, field, reason):
    before = counts()
    with pytest.raises(Invalid) as err:
        service.add_entity(actor=team.lead[1], case_id=team.case_id, **kwargs)
    assert err.value.status == 422
    assert field in err.value.fields, err.value.fields
    assert reason in " ".join(err.value.fields[field])
    assert counts() == before


def test_access_is_checked_before_input(app, team):
    outsider = team.outsider[1]
    with pytest.raises(NotFound):
        service.add_entity(actor=outsider, case_id=team.case_id, kind="spaceship")
    partner = team.partner_investigator[1]  # read-only grant
    with pytest.raises(Forbidden):
        add_phone(partner, team.case_id, "312-555-0199")
    assert count(Entity) == 0


def test_a_closed_case_takes_no_new_entities(app, team):
    cases.change_status(actor=team.lead[1], case_id=team.case_id, status="closed",
                        reason="done")
    with pytest.raises(Conflict):
        add_phone(team.lead[1], team.case_id, "312-555-0199")


# Need to know ---------------------------------------------------------------------------

def test_an_outsider_reaches_no_entity_and_no_list(app, team):
    phone = add_phone(team.lead[1], team.case_id, "312-555-0199")
    for who in (team.outsider[1], Actor.anonymous()):
        with pytest.raises(NotFound):
            service.get_entity(actor=who, entity_id=phone.id)
        with pytest.raises(NotFound):
            service.list_entities(actor=who, case_id=team.case_id)
        with pytest.raises(NotFound):
            service.list_links(actor=who, case_id=team.case_id)
        with pytest.raises(NotFound):
            service.case_network(actor=who, case_id=team.case_id)
    with pytest.raises(NotFound) as missing:
        service.get_entity(actor=team.outsider[1], entity_id=987654)
    assert str(missing.value) == service._DENIED_ENTITY
    denied = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "entity.read",
                                                         AuditEvent.outcome == "denied")).all()
    assert denied


def test_an_entity_shows_only_the_cases_the_reader_may_read(app, team):
    phone = add_phone(team.lead[1], team.case_id, "312-555-0199")
    _, other = person(agency=team.other_agency)
    other_case = make_case(other, title="Operation Wren")
    add_phone(other, other_case, "312-555-0199")
    view = service.get_entity(actor=other, entity_id=phone.id)
    assert [c.id for c in view.cases] == [other_case]
    out = schemas.entity_out(view.entity, actor=other, case=None, cases=view.cases)
    assert [c["id"] for c in out["cases"]] == [other_case]


# Survivors --------------------------------------------------------------------------------

def _survivor(team):
    return add_person(team.lead[1], team.case_id, "Maria Lopez", role="victim",
                      dob=years_ago(16), identifiers=[("person", "Maria Lopez|"
                                                        + years_ago(16))],
                      aliases=["Mari"])


def test_a_victim_gets_a_stable_unique_pseudonym(app, team):
    survivor = _survivor(team)
    assert PSEUDONYM.fullmatch(survivor.pseudonym)
    witness = add_person(team.lead[1], team.case_id, "Ann Other", role="witness")
    assert witness.pseudonym is None
    again = service.add_entity(actor=team.lead[1], case_id=team.case_id, kind="person",
                               identifiers=[("person", "LOPEZ, MARIA|" + years_ago(16))],
                               case_role="victim")
    assert again.id == survivor.id and again.pseudonym == survivor.pseudonym
    # becoming a victim later in a second role gives one too, once
    promoted = service.add_entity(actor=team.lead[1], case_id=team.case_id, kind="person",
                                  label="Ann Other", case_role="victim",
                                  identifiers=[])
    assert promoted.id != witness.id  # no identifier: a new entity, and a pseudonym
    assert PSEUDONYM.fullmatch(promoted.pseudonym)
    assert promoted.pseudonym != survivor.pseudonym


@pytest.mark.parametrize("who,sees", [
    ("lead", True),
    ("specialist", True),  # victim specialist on the team
    ("partner_specialist", True),  # victim specialist of the granted agency
    ("investigator", False),
    ("partner_investigator", False),
    ("supervisor", False),  # supervisor of the lead agency: reads the case, not survivors
])
def test_who_sees_a_survivor_and_who_sees_the_pseudonym(app, team, who, sees):
    survivor = _survivor(team)
    actor = getattr(team, who)[1]
    listed = service.list_entities(actor=actor, case_id=team.case_id)
    out = schemas.case_entity_out(listed.items[0], actor=actor, case=listed.case)
    assert policy.may_see_survivor(actor, listed.case) is sees
    assert out["survivor"] is True and out["minor"] is True
    assert out["role"] == "victim"
    if sees:
        assert out["label"] == "Maria Lopez" and out["redacted"] is False
        assert out["props"]["aliases"] == ["Mari"]
        assert [i["kind"] for i in out["identifiers"]] == ["person"]
    else:
        assert out["label"] == survivor.pseudonym and out["redacted"] is True
        assert out["props"] == {} and out["identifiers"] == []
        assert "Maria" not in repr(out) and "Lopez" not in repr(out)
    view = service.get_entity(actor=actor, entity_id=survivor.id)
    detail = schemas.entity_out(view.entity, actor=actor, case=None, cases=view.cases)
    assert (detail["label"] == "Maria Lopez") is sees
    assert bool(detail["identifiers"]) is sees


def test_a_victim_specialist_outside_the_case_sees_nothing_at_all(app, team):
    survivor = _survivor(team)
    with pytest.raises(NotFound):
        service.get_entity(actor=team.outsider_specialist[1], entity_id=survivor.id)


def test_a_survivor_shared_with_another_case_stays_hidden_there(app, team):
    survivor = _survivor(team)
    _, other = person(agency=team.other_agency)
    other_case = make_case(other, title="Operation Wren")
    # the other case's lead enters her by the same name and DOB, as a witness
    same = service.add_entity(actor=other, case_id=other_case, kind="person",
                              identifiers=[("person", "Maria Lopez|" + years_ago(16))],
                              case_role="witness")
    assert same.id == survivor.id
    # the other case's lead is a lead of *that* case: may see survivors there, as that
    # case entered her (the name and DOB it typed), never what the first case wrote
    case = db.session.get(Case, other_case)
    seen = schemas.entity_out(same, actor=other, case=case)
    assert seen["label"] == f"Maria Lopez (DOB {years_ago(16)})"
    assert seen["props"] == {} and seen["role"] == "witness"
    inv_user, inv = person(agency=team.other_agency)
    cases.add_member(actor=other, case_id=other_case, user_id=inv_user.id,
                     case_role="investigator")
    out = schemas.entity_out(db.session.get(Entity, same.id), actor=inv, case=case)
    assert out["label"] == survivor.pseudonym and out["identifiers"] == []


def test_links_and_timeline_show_the_pseudonym_to_the_team(app, team):
    lead = team.lead[1]
    survivor = _survivor(team)
    phone = add_phone(lead, team.case_id, "312-555-0199")
    service.add_link(actor=lead, case_id=team.case_id, source_id=survivor.id,
                     target_id=phone.id, type="USES", first_seen="2025-03-01",
                     last_seen="2025-04-01")
    inv = team.investigator[1]
    links = service.list_links(actor=inv, case_id=team.case_id)
    out = schemas.link_out(links.items[0], actor=inv, case=links.case)
    assert out["source"]["label"] == survivor.pseudonym
    events = cases.timeline(actor=inv, case_id=team.case_id)
    link_events = [e for e in events if e.kind == "link"]
    assert [e.summary.split(":")[0] for e in link_events] == ["First seen", "Last seen"]
    assert all(survivor.pseudonym in e.summary and "Maria" not in e.summary
               for e in link_events)
    lead_events = [e for e in cases.timeline(actor=lead, case_id=team.case_id)
                   if e.kind == "link"]
    assert all("Maria Lopez" in e.summary for e in lead_events)


def test_audit_records_carry_ids_not_names(app, team):
    _survivor(team)
    details = " ".join(e.details or "" for e in db.session.scalars(select(AuditEvent)))
    assert "Maria" not in details and "Lopez" not in details


# Minor flag ------------------------------------------------------------------------------

@pytest.mark.parametrize("years,minor", [(10, True), (17, True), (18, False), (40, False)])
def test_minor_is_derived_from_the_date_of_birth(app, team, years, minor):
    p = add_person(team.lead[1], team.case_id, f"Person {years}", dob=years_ago(years))
    case = db.session.get(Case, team.case_id)
    assert schemas.entity_out(p, actor=team.lead[1], case=case)["minor"] is minor
    assert outbox.entity_row(p)["minor"] is minor


def test_no_date_of_birth_is_not_a_minor(app, team):
    p = add_person(team.lead[1], team.case_id, "No Dob")
    case = db.session.get(Case, team.case_id)
    assert schemas.entity_out(p, actor=team.lead[1], case=case)["minor"] is False


# Links -----------------------------------------------------------------------------------

@pytest.fixture()
def pair(team):
    lead = team.lead[1]
    return (add_phone(lead, team.case_id, "312-555-0101"),
            add_phone(lead, team.case_id, "312-555-0102"))


def test_a_restated_link_is_merged_not_duplicated(app, team, pair):
    a, b = pair
    lead = team.lead[1]
    kw = {"actor": lead, "case_id": team.case_id, "source_id": a.id, "target_id": b.id,
          "type": "CALLED", "provenance_kind": "import", "provenance_ref": "imp-7"}
    first = service.add_link(**kw, first_seen="2025-01-05", last_seen="2025-01-20", count=12)
    rows = len(pending_outbox())
    again = service.add_link(**kw, first_seen="2025-01-05", last_seen="2025-01-20", count=12)
    assert again.id == first.id and count(Link) == 1
    assert len(pending_outbox()) == rows  # nothing changed: nothing to project
    wider = service.add_link(**kw, first_seen="2024-12-30T22:15:00Z", last_seen="2025-01-10",
                             count=3, confidence=0.5)
    assert wider.id == first.id
    assert wider.first_seen == datetime(2024, 12, 30, 22, 15, tzinfo=UTC)
    assert wider.last_seen == datetime(2025, 1, 20, tzinfo=UTC)
    assert (wider.count, wider.confidence) == (12, 1.0)
    assert len(pending_outbox()) == rows + 1
    manual = service.add_link(actor=lead, case_id=team.case_id, source_id=a.id,
                              target_id=b.id, type="CALLED")
    assert manual.id != first.id and count(Link) == 2  # another source: its own statement
    assert [e.action for e in db.session.scalars(
        select(AuditEvent).where(AuditEvent.action.like("link.%")).order_by(AuditEvent.seq))
    ] == ["link.add", "link.merge", "link.merge", "link.add"]


def test_payments_carry_an_amount(app, team, pair):
    a, b = pair
    link = service.add_link(actor=team.lead[1], case_id=team.case_id, source_id=a.id,
                            target_id=b.id, type="paid", amount="1,250.50", count="4")
    assert (link.type, str(link.amount), link.count) == ("PAID", "1250.50", 4)
    assert outbox.link_row(link)["amount"] == 1250.5


def test_a_link_from_a_note_names_a_note_of_the_case(app, team, pair):
    a, b = pair
    lead = team.lead[1]
    note = cases.add_note(actor=lead, case_id=team.case_id, body="Saw them together")
    link = service.add_link(actor=lead, case_id=team.case_id, source_id=a.id, target_id=b.id,
                            type="ASSOCIATED_WITH", provenance_kind="note",
                            provenance_ref=str(note.id))
    assert (link.provenance_kind, link.provenance_ref) == ("note", str(note.id))


@pytest.mark.parametrize("change,field", [
    ({"type": "HUGGED"}, "type"),
    ({"type": None}, "type"),
    ({"source_id": None}, "source_id"),
    ({"target_id": 987654}, "target_id"),
    ({"target_id": "same"}, "target_id"),
    ({"confidence": 1.5}, "confidence"),
    ({"confidence": "high"}, "confidence"),
    ({"count": 0}, "count"),
    ({"amount": -5}, "amount"),
    ({"first_seen": "2025-02-01", "last_seen": "2025-01-01"}, "last_seen"),
    ({"first_seen": "yesterday"}, "first_seen"),
    ({"provenance_kind": "rumour"}, "provenance_kind"),
    ({"provenance_kind": "evidence"}, "provenance_ref"),
    ({"provenance_kind": "note", "provenance_ref": "987654"}, "provenance_ref"),
    ({"provenance_ref": "abc"}, "provenance_ref"),
    ({"type": "LIVES_AT"}, "target_id"),
])
def test_bad_link_input_is_invalid_and_writes_nothing(app, team, pair, change, field):
    a, b = pair
    kw = {"source_id": a.id, "target_id": b.id, "type": "CALLED"}
    if change.get("target_id") == "same":
        change = {"target_id": a.id}
    kw.update(change)
    before = counts()
    with pytest.raises(Invalid) as err:
        service.add_link(actor=team.lead[1], case_id=team.case_id, **kw)
    assert field in err.value.fields, err.value.fields
    assert counts() == before


def test_a_link_needs_both_ends_in_the_case(app, team, pair):
    a, _ = pair
    _, other = person(agency=team.other_agency)
    other_case = make_case(other)
    elsewhere = add_phone(other, other_case, "312-555-0188")
    with pytest.raises(Invalid) as err:
        service.add_link(actor=team.lead[1], case_id=team.case_id, source_id=a.id,
                         target_id=elsewhere.id, type="CALLED")
    assert err.value.fields == {"target_id": ["Not an entity of this case."]}


# The outbox ------------------------------------------------------------------------------

def test_every_change_writes_its_outbox_row_and_the_rows_wait_while_neo4j_is_down(
        app, team, pair):
    a, b = pair
    link = service.add_link(actor=team.lead[1], case_id=team.case_id, source_id=a.id,
                            target_id=b.id, type="TEXTED")
    rows = pending_outbox()
    assert [(r.op, r.object_id) for r in rows] == [
        ("upsert_entity", a.id), ("upsert_entity", b.id), ("upsert_link", link.id)]
    # the first write tried to drain in-process (and deconfliction's second-degree
    # check drains before it asks Neo4j), failed fast, and backs off since
    attempts = rows[0].attempts
    assert attempts >= 1 and "ServiceUnavailable" in rows[0].last_error
    result = outbox.drain()
    assert not result.ok and result.processed == 0 and result.failed == 3
    assert "ServiceUnavailable" in result.error
    after = pending_outbox()
    assert len(after) == 3 and all(r.processed_at is None for r in after)
    assert after[0].attempts == attempts + 1


def test_a_change_that_fails_writes_no_outbox_row(app, team, monkeypatch):
    before = counts()

    def broken(**kwargs):
        raise RuntimeError("audit trail unavailable")

    monkeypatch.setattr(audit_service, "record", broken)
    with pytest.raises(RuntimeError):
        add_phone(team.lead[1], team.case_id, "312-555-0199")
    db.session.rollback()  # what the request's error handler does
    assert counts() == before
    assert count(GraphOutbox) == 0


def test_an_unchanged_restatement_writes_no_outbox_row(app, team):
    add_phone(team.lead[1], team.case_id, "312-555-0199")
    rows = count(GraphOutbox)
    add_phone(team.lead[1], team.case_id, "312 555 0199")
    assert count(GraphOutbox) == rows


def test_a_drain_that_cannot_start_never_fails_the_write(app, team, monkeypatch):
    from types import SimpleNamespace

    from taskforce.graph import tasks

    def broker_down():
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks, "drain_outbox", SimpleNamespace(delay=broker_down))
    monkeypatch.setitem(app.extensions, "graph_outbox", {"down_until": 0.0})
    phone = add_phone(team.lead[1], team.case_id, "312-555-0199")
    assert db.session.get(Entity, phone.id) is not None
    assert [r.object_id for r in pending_outbox()] == [phone.id]


def test_the_drain_runs_one_at_a_time(app, team):
    add_phone(team.lead[1], team.case_id, "312-555-0199")
    with outbox.exclusive() as mine:
        assert mine
        assert outbox.drain().busy is True


def test_projection_rows_hold_no_survivor_identity(app, team):
    survivor = _survivor(team)
    row = outbox.entity_row(db.session.get(Entity, survivor.id))
    assert row == {"id": f"ent-{survivor.id}", "kind": "person", "label": survivor.pseudonym,
                   "cases": [team.case_id], "case_labels": [survivor.pseudonym],
                   "survivor": True, "minor": True}


def test_a_synthetic_network_enters_through_the_service(app, team):
    from taskforce.graph.synthetic import generate
    from tests.factories_graph import load_synthetic

    network = generate(seed=11, controllers=2, victims_per_controller=2, phones_per_controller=2,
                       buyers=4, ads_per_phone=1)
    ids = load_synthetic(team.lead[1], team.case_id, network)
    assert count(Entity) == len(network.entities) == len(set(ids.values()))
    assert count(Link) == len({(lk.source, lk.target, lk.type) for lk in network.links})
    victims = [ids[e.id] for e in network.by_role("victim")]
    assert all(PSEUDONYM.fullmatch(db.session.get(Entity, i).pseudonym) for i in victims)
    minors = {ids[m] for m in network.minors}
    assert {i for i in victims
            if db.session.get(Entity, i).in_case(team.case_id).minor_on(network.start)} == minors
