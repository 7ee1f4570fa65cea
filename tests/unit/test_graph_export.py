"""Case exports (FollowTheMoney JSON lines, i2 CSV, GraphML) over the API, on SQLite:
need to know, survivor pseudonyms (and what a survivor uses), audit, bad format.

The FollowTheMoney lines are checked with the followthemoney library itself (the data
model OCCRP Aleph imports with), so a schema or property it would refuse fails here.
"""
from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import select

from taskforce.audit.models import AuditEvent
from taskforce.extensions import db
from taskforce.graph import service
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


MOTEL_ADDRESS = "1420 N Lincoln Ave, Springfield, IL 62702"
FORMATS = ("ftm.jsonl", "nodes.csv", "links.csv", "graph.graphml")


@pytest.fixture()
def case(app):
    team = make_team()
    lead = team.lead[1]
    kw = {"actor": lead, "case_id": team.case_id}
    boss = add_person(lead, team.case_id, "Viktor Petrov", role="suspect", dob="1980-02-02",
                      aliases=["V"], sex="male", notes="=HYPERLINK(\"http://x\")")
    maria = add_person(lead, team.case_id, "Maria Lopez", role="victim", dob="2009-05-05")
    her_phone = add_phone(lead, team.case_id, "(312) 555-0177", label="Maria's cell")
    his_phone = add_phone(lead, team.case_id, "(312) 555-0100", label="trap phone")
    account = service.add_entity(**kw, kind="bank_account", label="Chase 6789",
                                 identifiers=[("bank_account", "021000021:123456789")],
                                 props={"bank": "Chase"})
    motel = service.add_entity(**kw, kind="location", label="Sunset Motel",
                               identifiers=[("address", MOTEL_ADDRESS)],
                               props={"location_kind": "hotel_motel", "lat": 39.8, "lon": -89.6})
    service.add_link(**kw, source_id=maria.id, target_id=her_phone.id, type="USES")
    service.add_link(**kw, source_id=boss.id, target_id=his_phone.id, type="USES")
    service.add_link(**kw, source_id=his_phone.id, target_id=her_phone.id, type="CALLED",
                     count=14, first_seen="2025-03-01T10:00", last_seen="2025-03-20T22:15")
    service.add_link(**kw, source_id=boss.id, target_id=account.id, type="OWNS")
    service.add_link(**kw, source_id=account.id, target_id=boss.id, type="PAID", amount=1250)
    service.add_link(**kw, source_id=boss.id, target_id=maria.id, type="CONTROLS")
    service.add_link(**kw, source_id=maria.id, target_id=motel.id, type="STAYED_AT",
                     first_seen="2025-03-02")
    return {"team": team, "boss": boss, "maria": maria, "her_phone": her_phone,
            "his_phone": his_phone, "account": account, "motel": motel}


def _get(app, user, case_id, fmt):
    return api_caller(app, user).get(f"/api/v1/graph/cases/{case_id}/export/{fmt}")


def _ftm(resp) -> list[dict]:
    return [json.loads(line) for line in resp.get_data(as_text=True).splitlines() if line]


def test_followthemoney_lines_are_valid_and_complete(app, case):
    import followthemoney
    team = case["team"]
    resp = _get(app, team.lead[0], team.case_id, "ftm.jsonl")
    assert resp.status_code == 200 and resp.mimetype == "application/x-ndjson"
    assert "attachment" in resp.headers["Content-Disposition"]
    lines = _ftm(resp)
    ids = {x["id"] for x in lines}
    proxies = [followthemoney.model.get_proxy(x, cleaned=False) for x in lines]
    for proxy in proxies:
        assert not proxy.schema.abstract
        for prop, value in proxy.itervalues():  # every reference resolves in the file
            if prop.type.name == "entity":
                assert value in ids, (proxy.id, prop.name, value)
    by_schema = {}
    for x in lines:
        by_schema.setdefault(x["schema"], []).append(x)
    assert len(by_schema["Person"]) == 2 and len(by_schema["Call"]) == 1
    boss = next(p for p in by_schema["Person"] if p["properties"]["name"] == ["Viktor Petrov"])
    assert boss["properties"]["phone"] == ["+13125550100"]  # Person.phone from USES
    assert boss["properties"]["birthDate"] == ["1980-02-02"]
    call = by_schema["Call"][0]["properties"]
    assert (call["callerNumber"], call["receiverNumber"]) == (["+13125550100"],
                                                              ["+13125550177"])
    assert call["startDate"] == ["2025-03-01T10:00:00"]
    assert by_schema["Payment"][0]["properties"]["amount"] == ["1250.0"]
    assert by_schema["Ownership"][0]["properties"]["asset"] == [f"tf-entity-{case['account'].id}"]
    assert by_schema["Associate"][0]["properties"]["relationship"] == ["controls"]
    assert by_schema["UnknownLink"][0]["properties"]["role"] == ["stayed at"]
    # the lead may see the survivor: her name is there
    assert any(p["properties"]["name"] == ["Maria Lopez"] for p in by_schema["Person"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_investigator_gets_pseudonyms_for_the_survivor_and_her_phone(app, case, fmt):
    team = case["team"]
    resp = _get(app, team.investigator[0], team.case_id, fmt)
    assert resp.status_code == 200
    text = resp.get_data(as_text=True)
    for secret in ("Maria", "2009-05-05", "+13125550177", "555-0177", "Maria's cell"):
        assert secret not in text, (fmt, secret)
    if fmt != "links.csv":  # links name their ends by id only
        assert case["maria"].pseudonym in text
        assert "Viktor Petrov" in text  # the rest of the case as entered


@pytest.mark.parametrize("fmt", FORMATS)
def test_outsiders_get_nothing_and_another_case_gets_only_its_own(app, case, fmt):
    team = case["team"]
    assert _get(app, team.outsider[0], team.case_id, fmt).status_code == 404
    other_user, other = person(agency=team.other_agency)
    other_case = make_case(other, title="Operation Wren")
    add_phone(other, other_case, "312 555 0100", label="unknown caller")  # shares his phone
    resp = _get(app, other_user, other_case, fmt)
    assert resp.status_code == 200
    text = resp.get_data(as_text=True)
    assert "unknown caller" in text or fmt == "links.csv"
    for secret in ("trap phone", "Viktor", "Maria", "Sunset"):
        assert secret not in text


def test_i2_csv_has_one_row_per_entity_and_link(app, case):
    team = case["team"]
    nodes = list(csv.DictReader(io.StringIO(
        _get(app, team.lead[0], team.case_id, "nodes.csv").get_data(as_text=True))))
    links = list(csv.DictReader(io.StringIO(
        _get(app, team.lead[0], team.case_id, "links.csv").get_data(as_text=True))))
    assert len(nodes) == 6 and len(links) == 7
    boss = next(n for n in nodes if n["label"] == "Viktor Petrov")
    assert (boss["i2_type"], boss["role"], boss["date_of_birth"]) == ("Person", "suspect",
                                                                     "1980-02-02")
    assert boss["notes"].startswith("'=")  # a formula is written as text
    maria = next(n for n in nodes if n["entity_id"] == str(case["maria"].id))
    assert (maria["survivor"], maria["minor"]) == ("yes", "yes")
    call = next(lk for lk in links if lk["link_type"] == "CALLED")
    assert (call["from_id"], call["to_id"], call["count"]) == (
        str(case["his_phone"].id), str(case["her_phone"].id), "14")


def test_graphml_parses_with_every_node_and_edge(app, case):
    team = case["team"]
    resp = _get(app, team.investigator[0], team.case_id, "graph.graphml")
    root = ET.fromstring(resp.get_data())
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    nodes = root.findall(".//g:node", ns)
    edges = root.findall(".//g:edge", ns)
    assert len(nodes) == 6 and len(edges) == 7
    labels = {n.find("g:data[@key='n_label']", ns).text for n in nodes}
    assert case["maria"].pseudonym in labels and "Viktor Petrov" in labels
    node_ids = {n.get("id") for n in nodes}
    assert all(e.get("source") in node_ids and e.get("target") in node_ids for e in edges)


def test_exports_are_audited_and_a_bad_format_is_422(app, case):
    team = case["team"]
    assert _get(app, team.lead[0], team.case_id, "nodes.csv").status_code == 200
    event = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "case.export")).one()
    assert json.loads(event.details)["format"] == "nodes.csv"
    assert event.case_id == team.case_id
    bad = _get(app, team.lead[0], team.case_id, "report.xlsx")
    assert bad.status_code == 422 and "format" in bad.json["error"]["fields"]
