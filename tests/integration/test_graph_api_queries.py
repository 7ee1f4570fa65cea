"""The graph question API (/api/v1/graph/...) against the real Neo4j, on a small known
network entered through the service and projected by the outbox drain: the answers
asserted (a path, the time-respecting chain, the shared buyer, the top key player,
the communities), need to know between two cases sharing a phone, survivor
pseudonyms (and the survivor's phone), 422 on bad arguments, and the audit trail.
"""
from __future__ import annotations

import json
from datetime import date

import pytest
from sqlalchemy import select

from taskforce.audit.models import AuditEvent
from taskforce.extensions import db
from taskforce.graph import queries, service
from tests.factories_graph import (
    add_person,
    add_phone,
    make_team,
    pending_outbox,
)
from tests.factories_investigations import api_caller, make_case, person

pytestmark = pytest.mark.integration

A_LABEL = "Viktor's trap phone"


@pytest.fixture()
def app_environ(app_environ, neo4j_service):
    return {**app_environ, **neo4j_service.env()}


@pytest.fixture(autouse=True)
def _clean(clean_graph):
    """Every test here starts from an empty graph (tests/conftest.py)."""


def _dob(years: int) -> str:
    today = date.today()
    return date(today.year - years, today.month, min(today.day, 28)).isoformat()


@pytest.fixture()
def net(app):
    team = make_team()
    lead = team.lead[1]
    kw = {"actor": lead, "case_id": team.case_id}
    e = {
        "boss": add_person(lead, team.case_id, "Viktor Petrov", role="suspect"),
        "recruiter": add_person(lead, team.case_id, "Dana Cole", role="suspect"),
        "maria": add_person(lead, team.case_id, "Maria Lopez", role="victim", dob=_dob(15)),
        "buyer1": add_person(lead, team.case_id, "Buyer One", role="buyer"),
        "buyer2": add_person(lead, team.case_id, "Buyer Two", role="buyer"),
        "p_boss": add_phone(lead, team.case_id, "(312) 555-0100", label=A_LABEL),
        "p_maria": add_phone(lead, team.case_id, "(312) 555-0177", label="Maria's cell"),
    }
    ids = {k: v.id for k, v in e.items()}

    def link(s, t, type_, **more):
        service.add_link(**kw, source_id=ids[s], target_id=ids[t], type=type_, **more)

    link("boss", "recruiter", "ASSOCIATED_WITH")
    link("recruiter", "maria", "RECRUITED", first_seen="2024-11-01")
    link("boss", "maria", "CONTROLS")
    link("buyer1", "boss", "PAID", amount=300, first_seen="2025-01-05")
    link("boss", "recruiter", "PAID", amount=100, first_seen="2025-01-10")
    link("buyer2", "boss", "PAID", amount=200, first_seen="2025-01-20")
    link("boss", "p_boss", "USES")
    link("maria", "p_maria", "USES")
    link("p_boss", "p_maria", "CALLED", count=9, first_seen="2025-01-02",
         last_seen="2025-02-02")
    # case B, another agency's, shares only Viktor's phone number
    b_user, b_lead = person(agency=team.other_agency)
    case_b = make_case(b_lead, title="Operation Wren")
    kyle = add_person(b_lead, case_b, "Kyle Smith", role="suspect")
    shared = add_phone(b_lead, case_b, "312.555.0100", label="unknown caller")
    service.add_link(actor=b_lead, case_id=case_b, source_id=kyle.id, target_id=shared.id,
                     type="USES")
    assert shared.id == ids["p_boss"]
    assert pending_outbox() == []  # all projected
    return {"team": team, "ids": ids, "case_b": case_b, "b_user": b_user, "kyle": kyle.id,
            "maria": e["maria"]}


def _api(app, user):
    return api_caller(app, user)


def _labels(body) -> dict[int, str]:
    return {n["id"]: n["label"] for n in body["nodes"]}


def test_expand_shows_each_reader_what_they_may_see(app, net):
    team, ids = net["team"], net["ids"]
    lead = _api(app, team.lead[0]).get(f"/api/v1/graph/expand?entity_id={ids['boss']}&hops=1")
    assert lead.status_code == 200, lead.json
    got = _labels(lead.json)
    assert got[ids["maria"]] == "Maria Lopez" and got[ids["p_boss"]] == A_LABEL
    assert set(got) == {ids[k] for k in ("boss", "recruiter", "maria", "buyer1", "buyer2",
                                         "p_boss")}  # not Kyle: case B's link
    edge = next(x for x in lead.json["edges"] if x["type"] == "PAID"
                and x["source"] == ids["buyer1"])
    assert (edge["target"], edge["case_id"], edge["amount"]) == (ids["boss"], team.case_id,
                                                                 300.0)

    inv = _api(app, team.investigator[0]).get(
        f"/api/v1/graph/expand?entity_id={ids['boss']},{ids['maria']}&hops=1")
    nodes = {n["id"]: n for n in inv.json["nodes"]}
    maria = nodes[ids["maria"]]
    assert maria["label"] == net["maria"].pseudonym and maria["redacted"] is True
    assert maria["minor"] is True and maria["survivor"] is True
    her_phone = nodes[ids["p_maria"]]
    assert her_phone["label"] == f"{net['maria'].pseudonym}'s phone"
    assert "Maria" not in json.dumps(inv.json)


def test_expand_filters_kinds_link_types_dates_and_confidence(app, net):
    team, ids = net["team"], net["ids"]
    api = _api(app, team.lead[0])
    url = f"/api/v1/graph/expand?entity_id={ids['boss']}"
    phones = api.get(f"{url}&kinds=phone").json
    assert set(_labels(phones)) == {ids["boss"], ids["p_boss"]}
    paid = api.get(f"{url}&link_types=PAID&until=2025-01-06").json
    assert set(_labels(paid)) == {ids["boss"], ids["buyer1"]}
    calls = api.get(f"/api/v1/graph/expand?entity_id={ids['p_boss']}&link_types=CALLED"
                    "&since=2025-02-01&until=2025-02-10").json  # active in the window
    assert set(_labels(calls)) == {ids["p_boss"], ids["p_maria"]}
    after = api.get(f"/api/v1/graph/expand?entity_id={ids['p_boss']}&link_types=CALLED"
                    "&since=2025-03-01").json  # the calls had stopped by then
    assert [n["id"] for n in after["nodes"]] == [ids["p_boss"]]
    two = api.get(f"{url}&hops=2&link_types=USES,CALLED").json
    assert set(_labels(two)) == {ids["boss"], ids["p_boss"], ids["p_maria"]}
    assert api.get(f"{url}&min_confidence=1.0").json["nodes"]


def test_paths_shared_connections_key_players_and_communities(app, net):
    team, ids = net["team"], net["ids"]
    api = _api(app, team.lead[0])
    one = api.get(f"/api/v1/graph/shortest-path?source={ids['buyer1']}"
                  f"&target={ids['p_maria']}").json["path"]
    steps = [n["id"] for n in one["nodes"]]
    assert one["length"] == 3 and steps[:2] == [ids["buyer1"], ids["boss"]]
    assert steps[-1] == ids["p_maria"]
    every = api.get(f"/api/v1/graph/all-shortest-paths?source={ids['boss']}"
                    f"&target={ids['p_maria']}").json["paths"]
    assert sorted([n["id"] for n in p["nodes"]][1] for p in every) == sorted(
        [ids["maria"], ids["p_boss"]])
    chains = api.get(f"/api/v1/graph/time-paths?source={ids['buyer1']}&link_types=PAID").json
    assert [[n["id"] for n in p["nodes"]] for p in chains["paths"]] == [
        [ids["buyer1"], ids["boss"]], [ids["buyer1"], ids["boss"], ids["recruiter"]]]
    late = api.get(f"/api/v1/graph/time-paths?source={ids['buyer2']}&link_types=PAID").json
    assert [[n["id"] for n in p["nodes"]] for p in late["paths"]] == [
        [ids["buyer2"], ids["boss"]]]  # money left the boss before buyer 2 paid
    shared = api.get(f"/api/v1/graph/shared?entity_id={ids['buyer1']}"
                     f"&entity_id={ids['buyer2']}").json["shared"]
    assert [(s["entity"]["id"], s["shared_with"]) for s in shared] == [
        (ids["boss"], sorted([ids["buyer1"], ids["buyer2"]]))]
    top = api.get(f"/api/v1/graph/cases/{team.case_id}/key-players?top=3").json
    assert top["key_players"][0]["id"] == ids["boss"]
    assert top["key_players"][0]["rank"] == 1 and top["key_players"][0]["betweenness"] > 0
    comm = api.get(f"/api/v1/graph/cases/{team.case_id}/communities").json
    members = sorted(i for group in comm["communities"] for i in group)
    assert set(ids.values()) <= set(members)
    assert comm["membership"][str(ids["boss"])] in range(len(comm["communities"]))
    assert len(members) == len(set(members))
    whole = api.get(f"/api/v1/graph/cases/{team.case_id}/network").json
    assert set(_labels(whole)) >= set(ids.values()) and len(whole["edges"]) >= 9


def test_another_case_sharing_the_phone_gets_only_its_own_words_and_links(app, net):
    ids, team = net["ids"], net["team"]
    api = _api(app, net["b_user"])
    got = api.get(f"/api/v1/graph/expand?entity_id={ids['p_boss']}&hops=3").json
    assert _labels(got) == {ids["p_boss"]: "unknown caller", net["kyle"]: "Kyle Smith"}
    assert all(e["case_id"] == net["case_b"] for e in got["edges"])
    text = json.dumps(got)
    assert A_LABEL not in text and "Viktor" not in text and "Maria" not in text
    # the graph engine itself answers with case B's label to a reader of case B only
    raw = queries.expand(case_ids=[net["case_b"]], entity_ids=[f"ent-{ids['p_boss']}"])
    assert {n["label"] for n in raw["nodes"]} == {"unknown caller", "Kyle Smith"}
    # a start in case A is as if it did not exist
    assert api.get(f"/api/v1/graph/expand?entity_id={ids['boss']}").json["nodes"] == []
    assert api.get(f"/api/v1/graph/shortest-path?source={net['kyle']}"
                   f"&target={ids['p_maria']}").json["path"] is None
    assert api.get(f"/api/v1/graph/shared?entity_id={net['kyle']}"
                   f"&entity_id={ids['boss']}").json["shared"] == []
    for path in ("key-players", "communities", "network", "export/ftm.jsonl"):
        assert api.get(f"/api/v1/graph/cases/{team.case_id}/{path}").status_code == 404
    assert api.get(f"/api/v1/graph/expand?entity_id={ids['boss']}"
                   f"&case_id={team.case_id}").status_code == 404


@pytest.mark.parametrize("query,field", [
    ("expand?entity_id={boss}&hops=9", "hops"),
    ("expand?hops=1", "entity_id"),
    ("expand?entity_id=abc", "entity_id"),
    ("expand?entity_id={boss}&link_types=TELEPORTED", "link_types"),
    ("expand?entity_id={boss}&kinds=spaceship", "arguments"),
    ("expand?entity_id={boss}&since=yesterday", "since"),
    ("shortest-path?source={boss}", "target"),
    ("shortest-path?source={boss}&target={boss}", "source"),
    ("time-paths?source={boss}&max_hops=12", "max_hops"),
    ("shared?entity_id={boss}", "entity_ids"),
])
def test_bad_arguments_are_422_naming_the_parameter(app, net, query, field):
    api = _api(app, net["team"].lead[0])
    resp = api.get("/api/v1/graph/" + query.format(boss=net["ids"]["boss"]))
    assert resp.status_code == 422, resp.json
    assert field in resp.json["error"]["fields"], resp.json


def test_bad_analysis_arguments_are_422(app, net):
    api = _api(app, net["team"].lead[0])
    cid = net["team"].case_id
    assert api.get(f"/api/v1/graph/cases/{cid}/key-players?top=0").status_code == 422
    assert api.get(f"/api/v1/graph/cases/{cid}/communities?method=magic").status_code == 422
    assert api.get(f"/api/v1/graph/cases/{cid}/communities?resolution=-1").status_code == 422


def test_every_question_is_audited(app, net):
    team, ids = net["team"], net["ids"]
    api = _api(app, team.lead[0])
    api.get(f"/api/v1/graph/expand?entity_id={ids['boss']}")
    api.get(f"/api/v1/graph/cases/{team.case_id}/key-players")
    actions = [e.action for e in db.session.scalars(
        select(AuditEvent).where(AuditEvent.action.like("graph.%")).order_by(AuditEvent.id))]
    assert actions == ["graph.expand", "graph.key_players"]
