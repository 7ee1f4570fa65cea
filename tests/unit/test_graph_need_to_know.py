"""Need to know between cases that share an identifier, and survivor protection passed
on to what a survivor uses: on SQLite, with Neo4j unreachable (the graph questions
against the real Neo4j are in tests/integration/test_graph_api_queries.py).

Case A and case B share only a phone number (one Entity). What A wrote about it (its
label, notes, other identifiers) is never shown to B, through the service, the
serializers or the API, and the other way round.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from taskforce.extensions import db
from taskforce.graph import outbox, schemas, service
from taskforce.graph.models import CaseEntity, Entity, GraphOutbox
from taskforce.investigations import service as cases
from taskforce.investigations.models import Case
from tests import factories_graph
from tests.factories_graph import (
    add_person,
    add_phone,
    make_team,
)
from tests.factories_investigations import api_caller, make_case, person

# shared fixtures (tests/factories_graph.py): Neo4j unreachable, the graph registered, a team
neo4j_down_environ = factories_graph.neo4j_down_environ
graph_registered = factories_graph.graph_registered
team_fixture = factories_graph.team_fixture


SECRET_LABEL = "Viktor's burner (informant K-7)"
SECRET_NOTE = "Informant K-7 says Viktor keeps a pistol in the glovebox"


@pytest.fixture()
def world(app):
    """Case A (the team's) and case B (another agency's) sharing one phone number."""
    team = make_team()
    a_lead = team.lead[1]
    phone_a = service.add_entity(
        actor=a_lead, case_id=team.case_id, kind="phone", label=SECRET_LABEL,
        identifiers=[("phone", "(312) 555-0199")],
        props={"notes": SECRET_NOTE, "carrier": "T-Mobile"})
    car_a = service.add_entity(
        actor=a_lead, case_id=team.case_id, kind="vehicle", label="Viktor's black Tahoe",
        identifiers=[("vehicle_plate", "TX:ABC1234"), ("vin", "1HGCM82633A004352")],
        props={"make": "Chevrolet", "notes": SECRET_NOTE})
    b_lead_user, b_lead = person(agency=team.other_agency)
    case_b = make_case(b_lead, title="Operation Wren")
    b_member_user, b_member = person(agency=team.other_agency)
    cases.add_member(actor=b_lead, case_id=case_b, user_id=b_member_user.id,
                     case_role="investigator")
    phone_b = add_phone(b_lead, case_b, "312.555.0199", label="unknown caller")
    car_b = service.add_entity(actor=b_lead, case_id=case_b, kind="vehicle",
                               identifiers=[("vehicle_plate", "tx abc1234".replace(" ", ":"))])
    assert phone_b.id == phone_a.id and car_b.id == car_a.id  # one entity each, shared
    return {"team": team, "case_a": team.case_id, "case_b": case_b, "b_lead": b_lead,
            "b_lead_user": b_lead_user, "b_member": b_member, "b_member_user": b_member_user,
            "phone": phone_a.id, "car": car_a.id}


def _leaks(value) -> list[str]:
    text = repr(value)
    return [s for s in (SECRET_LABEL, SECRET_NOTE, "Viktor", "T-Mobile", "1HGCM82633A004352",
                        "Chevrolet", "pistol") if s in text]


def test_each_case_keeps_its_own_words_about_a_shared_entity(world):
    rows = {ce.case_id: ce for ce in db.session.scalars(
        select(CaseEntity).where(CaseEntity.entity_id == world["phone"]))}
    assert rows[world["case_a"]].label == SECRET_LABEL
    assert rows[world["case_a"]].props == {"notes": SECRET_NOTE, "carrier": "T-Mobile"}
    assert rows[world["case_b"]].label == "unknown caller"
    assert rows[world["case_b"]].props == {}
    assert rows[world["case_b"]].identifier_keys == [["phone", "+13125550199"]]
    # the shared Entity holds no words of any case
    assert not hasattr(Entity, "label") and not hasattr(Entity, "props")


@pytest.mark.parametrize("who", ["b_lead", "b_member"])
def test_a_member_of_case_b_sees_nothing_case_a_wrote_in_the_service(world, who):
    actor = world[who]
    listed = service.list_entities(actor=actor, case_id=world["case_b"])
    out = schemas.case_entities_out(listed.items, actor=actor, case=listed.case)
    assert {e["id"] for e in out} == {world["phone"], world["car"]}
    phone = next(e for e in out if e["id"] == world["phone"])
    assert phone["label"] == "unknown caller" and phone["props"] == {}
    assert [i["value"] for i in phone["identifiers"]] == ["+13125550199"]
    car = next(e for e in out if e["id"] == world["car"])
    # the VIN case A attached to the shared vehicle is not shown to case B
    assert [i["kind"] for i in car["identifiers"]] == ["vehicle_plate"]
    assert _leaks(out) == []

    view = service.get_entity(actor=actor, entity_id=world["phone"])
    detail = schemas.entity_out(view.entity, actor=actor, case=None, cases=view.cases)
    assert [c["id"] for c in detail["cases"]] == [world["case_b"]]
    assert detail["label"] == "unknown caller"
    assert _leaks(detail) == []

    net = service.case_network(actor=actor, case_id=world["case_b"])
    assert _leaks(schemas.network_out(net.case, net.entities, net.links, actor=actor)) == []


def test_a_member_of_case_b_sees_nothing_case_a_wrote_in_the_api(app, world):
    api = api_caller(app, world["b_member_user"])
    listed = api.get(f"/api/v1/cases/{world['case_b']}/entities")
    assert listed.status_code == 200 and len(listed.json) == 2
    one = api.get(f"/api/v1/entities/{world['phone']}")
    assert one.status_code == 200 and one.json["label"] == "unknown caller"
    assert _leaks(listed.json) == [] and _leaks(one.json) == []
    # and case A itself stays closed to them
    assert api.get(f"/api/v1/cases/{world['case_a']}/entities").status_code == 404


def test_case_a_sees_its_own_words_and_not_case_bs(world):
    lead = world["team"].lead[1]
    view = service.get_entity(actor=lead, entity_id=world["phone"])
    detail = schemas.entity_out(view.entity, actor=lead, case=None, cases=view.cases)
    assert detail["label"] == SECRET_LABEL
    assert detail["props"]["notes"] == SECRET_NOTE
    assert "unknown caller" not in repr(detail)


def test_the_projection_labels_each_case_with_its_own_words(world):
    row = outbox.entity_row(db.session.get(Entity, world["phone"]))
    assert row["label"] == "Phone"  # the kind: no case's words
    assert dict(zip(row["cases"], row["case_labels"], strict=True)) == {
        world["case_a"]: SECRET_LABEL, world["case_b"]: "unknown caller"}


# Survivor protection passed on to what she uses --------------------------------------------

@pytest.fixture()
def used(app):
    team = make_team()
    lead = team.lead[1]
    survivor = add_person(lead, team.case_id, "Maria Lopez", role="victim", dob="2010-02-03")
    phone = add_phone(lead, team.case_id, "(312) 555-0177", label="Maria's cell")
    account = service.add_entity(actor=lead, case_id=team.case_id, kind="online_account",
                                 identifiers=[("online_account", "instagram:maria.l.2010")])
    service.add_link(actor=lead, case_id=team.case_id, source_id=survivor.id,
                     target_id=phone.id, type="USES")
    service.add_link(actor=lead, case_id=team.case_id, source_id=account.id,
                     target_id=survivor.id, type="OWNS")  # either direction
    other = add_phone(lead, team.case_id, "(312) 555-0100", label="trap phone")
    service.add_link(actor=lead, case_id=team.case_id, source_id=other.id, target_id=phone.id,
                     type="CALLED", first_seen="2025-03-01")
    return team, survivor, phone, account, other


@pytest.mark.parametrize("who,sees", [
    ("lead", True), ("specialist", True), ("partner_specialist", True),
    ("investigator", False), ("partner_investigator", False), ("supervisor", False),
])
def test_what_a_survivor_uses_is_pseudonymised_like_her(used, who, sees):
    team, survivor, phone, account, other = used
    actor = getattr(team, who)[1]
    case = db.session.get(Case, team.case_id)
    listed = service.list_entities(actor=actor, case_id=team.case_id)
    out = {e["id"]: e for e in schemas.case_entities_out(listed.items, actor=actor, case=case)}
    for shielded, number in ((phone, "+13125550177"), (account, "maria.l.2010")):
        seen = out[shielded.id]
        assert seen["shielded"] is True
        if sees:
            assert seen["redacted"] is False and number in repr(seen["identifiers"])
        else:
            assert seen["redacted"] is True and seen["identifiers"] == []
            assert seen["label"].startswith(survivor.pseudonym + "'s ")
            assert number not in repr(seen) and "Maria" not in repr(seen)
    # a phone she does not use is shown as entered to everyone on the case
    assert out[other.id]["label"] == "trap phone" and out[other.id]["redacted"] is False
    links = service.list_links(actor=actor, case_id=team.case_id)
    shown = repr(schemas.links_out(links.items, actor=actor, case=case))
    assert ("Maria's cell" in shown) is sees
    timeline = repr(list(service._links_timeline(case, actor)))
    assert "trap phone" in timeline and ("Maria's cell" in timeline) is sees


def test_the_shield_reaches_the_graph_projection(used):
    _, survivor, phone, _, other = used
    assert outbox.entity_row(db.session.get(Entity, phone.id))["case_labels"] == [
        f"{survivor.pseudonym}'s phone"]
    assert outbox.entity_row(db.session.get(Entity, other.id))["case_labels"] == ["trap phone"]


def test_a_person_becoming_a_survivor_shields_what_she_already_used(app):
    team = make_team()
    lead, inv = team.lead[1], team.investigator[1]
    ana = [("person", "Ana Ruiz|1990-01-05")]
    witness = add_person(lead, team.case_id, "Ana Ruiz", role="witness", identifiers=ana)
    phone = add_phone(lead, team.case_id, "(312) 555-0166", label="Ana's phone")
    service.add_link(actor=lead, case_id=team.case_id, source_id=witness.id,
                     target_id=phone.id, type="USES")
    case = db.session.get(Case, team.case_id)
    assert schemas.entity_out(phone, actor=inv, case=case)["label"] == "Ana's phone"
    before = {r.id for r in db.session.scalars(select(GraphOutbox))}
    same = add_person(lead, team.case_id, "Ana Ruiz", role="victim", identifiers=ana)
    assert same.id == witness.id and same.pseudonym
    db.session.expire_all()
    seen = schemas.entity_out(db.session.get(Entity, phone.id), actor=inv, case=case)
    assert seen["label"] == f"{same.pseudonym}'s phone" and seen["identifiers"] == []
    # the phone is re-projected so the graph drops its number too
    queued = db.session.scalars(select(GraphOutbox).where(GraphOutbox.id.not_in(before))).all()
    assert ("upsert_entity", phone.id) in {(r.op, r.object_id) for r in queued}
