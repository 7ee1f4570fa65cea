"""The graph question API with Neo4j down (its address refuses connections): every
question answers 503 with a clear message, never a 500, and an outsider still gets 404
before the graph engine is asked anything. Exports do not need the graph engine."""
from __future__ import annotations

from tests import factories_graph
from tests.factories_graph import (
    add_phone,
    make_team,
)
from tests.factories_investigations import api_caller

# shared fixtures (tests/factories_graph.py): Neo4j unreachable, the graph registered, a team
neo4j_down_environ = factories_graph.neo4j_down_environ
graph_registered = factories_graph.graph_registered
team_fixture = factories_graph.team_fixture


def test_graph_questions_answer_503_when_neo4j_is_down(app):
    team = make_team()
    a = add_phone(team.lead[1], team.case_id, "(312) 555-0101")
    b = add_phone(team.lead[1], team.case_id, "(312) 555-0102")
    api = api_caller(app, team.lead[0])
    cid = team.case_id
    for url in (f"expand?entity_id={a.id}", f"shortest-path?source={a.id}&target={b.id}",
                f"all-shortest-paths?source={a.id}&target={b.id}",
                f"time-paths?source={a.id}", f"shared?entity_id={a.id},{b.id}",
                f"cases/{cid}/network", f"cases/{cid}/key-players",
                f"cases/{cid}/communities"):
        resp = api.get(f"/api/v1/graph/{url}")
        assert resp.status_code == 503, (url, resp.status_code, resp.json)
        assert resp.json["error"]["code"] == "unavailable"
        assert "graph engine" in resp.json["error"]["message"]
    outsider = api_caller(app, team.outsider[0])
    assert outsider.get(f"/api/v1/graph/cases/{cid}/key-players").status_code == 404
    # exports are read from the database: they work with the graph engine down
    assert api.get(f"/api/v1/graph/cases/{cid}/export/nodes.csv").status_code == 200


def test_graph_questions_need_a_session(app):
    resp = app.test_client().get("/api/v1/graph/expand?entity_id=1",
                                 headers={"Accept": "application/json"})
    assert resp.status_code == 401
