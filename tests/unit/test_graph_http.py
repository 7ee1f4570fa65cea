"""Entities and links over HTTP (JSON API and the case's network page) and the
`flask graph` commands, on SQLite with Neo4j unreachable.

Need to know (404 for outsiders), survivor redaction in the API and the page,
422 with named fields and nothing written, never a 500, and writes that succeed
while the outbox waits.
"""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from taskforce.audit.models import AuditEvent
from taskforce.extensions import db
from taskforce.graph.models import Entity, GraphOutbox
from tests import factories_graph
from tests.factories_graph import (
    add_person,
    add_phone,
    count,
    counts,
    pending_outbox,
    years_ago,
)
from tests.factories_investigations import api_caller, browser

# shared fixtures (tests/factories_graph.py): Neo4j unreachable, the graph registered, a team
neo4j_down_environ = factories_graph.neo4j_down_environ
graph_registered = factories_graph.graph_registered
team_fixture = factories_graph.team_fixture


PSEUDONYM = re.compile(r"Survivor-[2-9A-HJKMNP-TV-Z]{4,8}")


@pytest.fixture()
def survivor(team):
    return add_person(team.lead[1], team.case_id, "Maria Lopez", role="victim", dob=years_ago(15),
                      identifiers=[("person", f"Maria Lopez|{years_ago(15)}")])


# API -----------------------------------------------------------------------------------

def test_add_and_read_entities_through_the_api(app, team):
    api = api_caller(app, team.lead[0])
    cid = team.case_id
    resp = api.post(f"/api/v1/cases/{cid}/entities", {
        "kind": "phone", "identifiers": [{"kind": "phone", "value": "(312) 555-0199"}]})
    assert resp.status_code == 201, resp.json
    body = resp.json
    assert body["identifiers"] == [{"kind": "phone", "value": "+13125550199",
                                    "display": "+1 312-555-0199"}]
    assert (body["case_id"], body["kind"], body["survivor"]) == (cid, "phone", False)
    again = api.post(f"/api/v1/cases/{cid}/entities", {
        "kind": "phone", "identifiers": [{"kind": "phone", "value": "312.555.0199"}]})
    assert again.status_code == 201 and again.json["id"] == body["id"]
    assert count(Entity) == 1
    listed = api.get(f"/api/v1/cases/{cid}/entities")
    assert [e["id"] for e in listed.json] == [body["id"]]
    assert api.get(f"/api/v1/cases/{cid}/entities?kind=person").json == []
    assert api.get(f"/api/v1/cases/{cid}/entities?kind=spaceship").status_code == 422
    one = api.get(f"/api/v1/entities/{body['id']}")
    assert one.status_code == 200
    assert [c["id"] for c in one.json["cases"]] == [cid]


def test_add_and_list_links_through_the_api(app, team):
    lead = team.lead[1]
    a = add_phone(lead, team.case_id, "312-555-0101")
    b = add_phone(lead, team.case_id, "312-555-0102")
    api = api_caller(app, team.lead[0])
    resp = api.post(f"/api/v1/cases/{team.case_id}/links", {
        "source_id": a.id, "target_id": b.id, "type": "CALLED", "count": 7,
        "first_seen": "2025-01-02", "last_seen": "2025-01-09T10:30:00Z",
        "provenance_kind": "import", "provenance_ref": "cdr-2025-01"})
    assert resp.status_code == 201, resp.json
    link = resp.json
    assert (link["count"], link["provenance"]) == (7, {"kind": "import", "ref": "cdr-2025-01"})
    assert link["first_seen"].startswith("2025-01-02T00:00:00")
    assert link["source"]["label"] == "+1 312-555-0101"
    listed = api.get(f"/api/v1/cases/{team.case_id}/links")
    assert [lk["id"] for lk in listed.json] == [link["id"]]
    assert api.get(f"/api/v1/cases/{team.case_id}/links?type=PAID").json == []


def test_writes_succeed_while_neo4j_is_down_and_the_outbox_waits(app, team):
    api = api_caller(app, team.lead[0])
    resp = api.post(f"/api/v1/cases/{team.case_id}/entities",
                    {"kind": "email", "identifiers": [{"kind": "email",
                                                       "value": "Boss@Example.com"}]})
    assert resp.status_code == 201
    [row] = pending_outbox()
    assert (row.op, row.object_id, row.processed_at) == ("upsert_entity", resp.json["id"], None)


# Need to know ------------------------------------------------------------------------------

def test_outsiders_get_404_for_entities_and_case_lists(app, team, survivor):
    phone = add_phone(team.lead[1], team.case_id, "312-555-0199")
    before = counts()
    for user in (team.outsider[0], team.outsider_specialist[0]):
        api = api_caller(app, user)
        cid = team.case_id
        for resp in (api.get(f"/api/v1/entities/{phone.id}"),
                     api.get(f"/api/v1/entities/{survivor.id}"),
                     api.get(f"/api/v1/cases/{cid}/entities"),
                     api.get(f"/api/v1/cases/{cid}/links"),
                     api.post(f"/api/v1/cases/{cid}/entities", {}),
                     api.post(f"/api/v1/cases/{cid}/entities", {"kind": "phone"}),
                     api.post(f"/api/v1/cases/{cid}/links", {})):
            assert resp.status_code == 404, resp.json
            assert resp.json["error"]["code"] == "not_found"
    hidden = api_caller(app, team.outsider[0]).get(f"/api/v1/entities/{phone.id}")
    missing = api_caller(app, team.outsider[0]).get("/api/v1/entities/987654")
    assert hidden.json == missing.json
    assert api_caller(app, team.outsider[0]).get(f"/api/v1/entities/{2**40}").status_code == 404
    assert counts() == before


def test_anonymous_callers_are_sent_away(app, team, client):
    assert client.get(f"/api/v1/cases/{team.case_id}/entities").status_code == 401
    assert client.get("/api/v1/entities/1").status_code == 401


# Survivors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("who,sees", [
    ("lead", True), ("specialist", True), ("partner_specialist", True),
    ("investigator", False), ("partner_investigator", False), ("supervisor", False),
])
def test_api_shows_the_survivor_only_to_lead_and_victim_specialists(app, team, survivor, who,
                                                                   sees):
    api = api_caller(app, getattr(team, who)[0])
    listed = api.get(f"/api/v1/cases/{team.case_id}/entities")
    assert listed.status_code == 200
    [entity] = listed.json
    one = api.get(f"/api/v1/entities/{survivor.id}").json
    for body in (entity, one):
        assert body["survivor"] is True and body["minor"] is True
        assert PSEUDONYM.fullmatch(body["pseudonym"])
        if sees:
            assert body["label"] == "Maria Lopez" and body["props"]["dob"] == years_ago(15)
            assert body["identifiers"][0]["kind"] == "person"
        else:
            assert body["label"] == body["pseudonym"] and body["redacted"] is True
            assert body["identifiers"] == [] and body["props"] == {}
            text = str(body)
            assert "Maria" not in text and "Lopez" not in text and years_ago(15) not in text


def test_links_in_the_api_show_the_pseudonym(app, team, survivor):
    phone = add_phone(team.lead[1], team.case_id, "312-555-0199")
    api = api_caller(app, team.lead[0])
    assert api.post(f"/api/v1/cases/{team.case_id}/links", {
        "source_id": survivor.id, "target_id": phone.id, "type": "USES",
        "first_seen": "2025-03-01"}).status_code == 201
    inv = api_caller(app, team.investigator[0])
    [link] = inv.get(f"/api/v1/cases/{team.case_id}/links").json
    assert link["source"]["label"] == survivor.pseudonym
    timeline = inv.get(f"/api/v1/cases/{team.case_id}/timeline").json["events"]
    summaries = " ".join(e["summary"] for e in timeline if e["kind"] == "link")
    assert survivor.pseudonym in summaries and "Maria" not in summaries


@pytest.mark.parametrize("roles,sees", [
    (("investigator",), False),
    (("victim_specialist",), True),
])
def test_the_network_page_redacts_like_the_api(app, team, survivor, roles, sees):
    from taskforce.investigations import service as cases

    page, user = browser(app, roles, agency=team.lead_agency)
    cases.add_member(actor=team.lead[1], case_id=team.case_id, user_id=user.id,
                     case_role="victim_specialist" if "victim_specialist" in roles
                     else "investigator")
    resp = page.get(f"/cases/{team.case_id}/network")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert survivor.pseudonym in html
    assert ("Maria Lopez" in html) is sees
    assert (years_ago(15) in html) is sees
    assert 'data-testid="minor"' in html


def test_the_lead_sees_the_name_on_the_page_and_the_former_lead_does_not(app, team,
                                                                         survivor):
    from taskforce.investigations import service as cases

    page, new_lead = browser(app, ("investigator",), agency=team.lead_agency)
    cases.add_member(actor=team.lead[1], case_id=team.case_id, user_id=new_lead.id,
                     case_role="investigator")
    url = f"/cases/{team.case_id}/network"
    assert "Maria Lopez" not in page.get(url).get_data(as_text=True)
    cases.change_lead(actor=team.lead[1], case_id=team.case_id, user_id=new_lead.id)
    assert "Maria Lopez" in page.get(url).get_data(as_text=True)
    former = api_caller(app, team.lead[0]).get(f"/api/v1/entities/{survivor.id}").json
    assert former["label"] == survivor.pseudonym  # now an investigator on the team


# Pages ---------------------------------------------------------------------------------------

def test_add_an_entity_and_a_link_from_the_page(app, team):
    from taskforce.investigations import service as cases

    page, user = browser(app, ("investigator",), agency=team.lead_agency)
    cases.add_member(actor=team.lead[1], case_id=team.case_id, user_id=user.id,
                     case_role="investigator")
    url = f"/cases/{team.case_id}/network"
    resp = page.post(f"{url}/entities", {"kind": "phone", "identifier_kind_0": "phone",
                                         "identifier_value_0": "(312) 555-0199"})
    assert resp.status_code == 302
    resp = page.post(f"{url}/entities", {"kind": "location", "label": "Sunset Motel",
                                         "identifier_kind_0": "address",
                                         "identifier_value_0": "1420 N Lincoln Ave, "
                                                               "Springfield, IL 62702",
                                         "location_kind": "hotel_motel"})
    assert resp.status_code == 302
    phone, motel = db.session.scalars(select(Entity).order_by(Entity.id)).all()
    assert motel.case_links[0].props == {"location_kind": "hotel_motel"}
    resp = page.post(f"{url}/links", {"source_id": phone.id, "target_id": motel.id,
                                      "type": "ASSOCIATED_WITH", "first_seen": "2025-02-01",
                                      "count": "2", "confidence": "0.8"})
    assert resp.status_code == 302
    html = page.get(url).get_data(as_text=True)
    assert "+1 312-555-0199" in html and "Sunset Motel" in html
    assert "ASSOCIATED_WITH" in html
    assert len(pending_outbox()) == 3


def test_bad_page_input_is_422_beside_the_form_and_writes_nothing(app, team):
    page, user = browser(app, ("investigator",), agency=team.lead_agency)
    from taskforce.investigations import service as cases

    cases.add_member(actor=team.lead[1], case_id=team.case_id, user_id=user.id,
                     case_role="investigator")
    before = counts()
    resp = page.post(f"/cases/{team.case_id}/network/entities",
                     {"kind": "phone", "identifier_kind_0": "phone",
                      "identifier_value_0": "555-01"})
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "identifiers.0.value" in html and "phone number" in html
    assert 'value="555-01"' in html  # what was typed is kept
    resp = page.post(f"/cases/{team.case_id}/network/links", {"type": "CALLED"})
    assert resp.status_code == 422
    assert "source_id" in resp.get_data(as_text=True)
    assert counts() == before


def test_outsider_gets_404_from_the_network_pages(app, team):
    page, _ = browser(app, ("investigator", "supervisor"), agency=team.other_agency)
    before = counts()
    assert page.get(f"/cases/{team.case_id}/network").status_code == 404
    assert page.post(f"/cases/{team.case_id}/network/entities",
                     {"kind": "phone", "label": "x"}).status_code == 404
    assert page.post(f"/cases/{team.case_id}/network/links", {}).status_code == 404
    assert counts() == before


def test_a_read_only_partner_sees_the_page_without_forms(app, team):
    page, _ = browser(app, ("investigator",), agency=team.partner_agency)
    resp = page.get(f"/cases/{team.case_id}/network")
    assert resp.status_code == 200
    assert 'data-testid="add-entity"' not in resp.get_data(as_text=True)
    assert page.post(f"/cases/{team.case_id}/network/entities",
                     {"kind": "phone", "label": "x"}).status_code == 403


# Bad input over the API: 422 naming the field, never 500, nothing written ------------------

@pytest.mark.parametrize("payload,field,reason", [
    ({"kind": "phone", "identifiers": [{"kind": "fax", "value": "312-555-0199"}]},
     "identifiers.0.kind", "unknown identifier kind 'fax'"),
    ({"kind": "phone", "identifiers": [{"kind": "phone", "value": "555-0199"}]},
     "identifiers.0.value", "not a valid phone number for region US"),
    ({"kind": "phone", "identifiers": [{"kind": "phone"}]},
     "identifiers.0.value", "a phone is required"),
    ({"kind": "vehicle", "identifiers": [{"kind": "vin", "value": "1HGCM82633A004353"}]},
     "identifiers.0.value", "check digit"),
    ({"kind": "person", "label": "x", "props": {"dob": "31/31/1990"}}, "props.dob", ""),
    ({"label": "x"}, "kind", "Required"),
    ({"kind": "phone", "label": "x", "colour": "red"}, "colour", "Unknown field"),
    ({"kind": "phone", "label": "x", "identifiers": "nope"}, "identifiers", ""),
    ({"kind": "phone", "label": "x", "props": ["x"]}, "props", ""),
])
def test_bad_entity_json_is_422_with_the_field_and_reason(app, team, payload, field, reason):
    api = api_caller(app, team.lead[0])
    before = counts()
    resp = api.post(f"/api/v1/cases/{team.case_id}/entities", payload)
    assert resp.status_code == 422, resp.json
    fields = resp.json["error"]["fields"]
    assert field in fields, fields
    assert reason in str(fields[field])
    assert counts() == before


@pytest.mark.parametrize("payload,field", [
    ({"type": "CALLED"}, "source_id"),
    ({"source_id": "x", "target_id": 1, "type": "CALLED"}, "source_id"),
    ({"source_id": 1, "target_id": 2, "type": "CALLED", "confidence": 2}, "confidence"),
    ({"source_id": 1, "target_id": 2, "type": "CALLED", "count": 0}, "count"),
    ({"source_id": 1, "target_id": 2, "type": "CALLED", "first_seen": "soon"}, "first_seen"),
    ({"source_id": 1, "target_id": 2, "type": "CALLED", "amount": -1}, "amount"),
    ({"source_id": 1, "target_id": 2**40, "type": "CALLED"}, "target_id"),
])
def test_bad_link_json_is_422_and_writes_nothing(app, team, payload, field):
    api = api_caller(app, team.lead[0])
    before = counts()
    resp = api.post(f"/api/v1/cases/{team.case_id}/links", payload)
    assert resp.status_code == 422, resp.json
    assert field in resp.json["error"]["fields"], resp.json
    assert counts() == before


def test_the_api_is_in_the_openapi_description(app, client):
    spec = client.get("/api/openapi.json").json
    for path in ("/api/v1/cases/{case_id}/entities", "/api/v1/entities/{entity_id}",
                 "/api/v1/cases/{case_id}/links"):
        assert path in spec["paths"], sorted(spec["paths"])
    assert "EntityOut" in spec["components"]["schemas"]


# Audit -------------------------------------------------------------------------------------

def test_reads_and_writes_are_audited(app, team):
    api = api_caller(app, team.lead[0])
    cid = team.case_id
    created = api.post(f"/api/v1/cases/{cid}/entities",
                       {"kind": "phone", "identifiers": [{"kind": "phone",
                                                          "value": "312-555-0199"}]}).json
    api.get(f"/api/v1/cases/{cid}/entities")
    api.get(f"/api/v1/entities/{created['id']}")
    actions = [e.action for e in db.session.scalars(
        select(AuditEvent).where(AuditEvent.case_id == cid).order_by(AuditEvent.seq))]
    assert {"entity.add", "entity.list"} <= set(actions)
    assert db.session.scalars(select(AuditEvent).where(AuditEvent.action == "entity.read")
                              ).one().object_id == str(created["id"])


# flask graph ...-------------------------------------------------------------------------------

def test_cli_drain_says_neo4j_is_down_and_the_rows_wait(app, team, runner):
    add_phone(team.lead[1], team.case_id, "312-555-0199")
    result = runner.invoke(args=["graph", "status"])
    assert result.exit_code == 0 and "outbox rows waiting: 1" in result.output
    assert "ServiceUnavailable" in result.output
    result = runner.invoke(args=["graph", "drain"])
    assert result.exit_code != 0
    assert "1 rows wait" in result.output
    assert count(GraphOutbox) == 1 and len(pending_outbox()) == 1


def test_cli_rebuild_fails_cleanly_when_neo4j_is_down(app, team, runner):
    add_phone(team.lead[1], team.case_id, "312-555-0199")
    result = runner.invoke(args=["graph", "rebuild"])
    assert result.exit_code != 0
    assert "rebuild failed" in result.output and "Traceback" not in result.output
    assert len(pending_outbox()) == 1


@pytest.mark.parametrize("payload", [
    {"kind": 5}, {"kind": ["phone"]}, {"kind": None}, {"kind": "phone", "label": 5},
    {"kind": "person", "label": "x", "case_role": 5}, {"kind": "phone", "identifiers": [5]},
    {"kind": "phone", "identifiers": [{"kind": 5, "value": {}}]},
    {"kind": "phone", "identifiers": [{"kind": "phone", "value": "x" * 2000}]},
    {"kind": "phone", "identifiers": [{"kind": "PHONE", "value": "\u0000"}]},
    {"kind": "person", "label": "x", "props": {"dob": 5, "names": 5, "sex": [], "aliases": {}}},
    {"kind": "vehicle", "label": "x", "props": {"year": "abc", "notes": {"a": 1}}},
    {"kind": "location", "label": "x", "props": {"lat": "nan", "lon": "inf"}},
    {"kind": "location", "label": "x", "props": {"lat": True, "lon": 1}},
    {"kind": "ad", "label": "x", "props": {"posted_on": "2025-13-45"}},
    [], "just text", {"kind": "phone", "identifiers": [{"kind": "phone"}] * 60},
    {"kind": "phone", "label": "a\u0000b"}, {"kind": "phone", "label": "x",
                                              "props": {"notes": "\u0000"}},
])
def test_odd_entity_json_is_never_a_500(app, team, payload):
    api = api_caller(app, team.lead[0])
    before = counts()
    resp = api.post(f"/api/v1/cases/{team.case_id}/entities", payload)
    assert resp.status_code in (400, 422), (resp.status_code, resp.json)
    assert resp.json["error"]["message"]
    assert counts() == before


@pytest.mark.parametrize("payload", [
    {"source_id": True, "target_id": 1, "type": "CALLED"},
    {"source_id": 1, "target_id": 2, "type": 5},
    {"source_id": 1, "target_id": 2, "type": "CALLED", "first_seen": 5},
    {"source_id": 1, "target_id": 2, "type": "CALLED", "first_seen": "9999-01-01"},
    {"source_id": 1, "target_id": 2, "type": "CALLED", "amount": 1e30},
    {"source_id": 1, "target_id": 2, "type": "CALLED", "count": 10**12},
    {"source_id": 1, "target_id": 2, "type": "CALLED", "provenance_kind": None},
    {"source_id": 1, "target_id": 2, "type": "CALLED", "provenance_ref": "x" * 100},
    {"source_id": -1, "target_id": 0, "type": "CALLED"},
])
def test_odd_link_json_is_never_a_500(app, team, payload):
    lead = team.lead[1]
    add_phone(lead, team.case_id, "312-555-0101")
    add_phone(lead, team.case_id, "312-555-0102")
    api = api_caller(app, team.lead[0])
    before = counts()
    resp = api.post(f"/api/v1/cases/{team.case_id}/links", payload)
    assert resp.status_code in (400, 422), (resp.status_code, resp.json)
    assert counts() == before
