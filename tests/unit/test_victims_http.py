"""Survivor-alert pages and API: who sees what (name or pseudonym), who may act,
bad input answered with 4xx and a message, CSRF on the forms."""
from __future__ import annotations

import re

import pytest

from taskforce.extensions import db
from taskforce.graph import service as graph
from taskforce.victims.models import SurvivorAlert
from tests.factories import csrf_from
from tests.factories_investigations import api_caller
from tests.unit.test_victims_alerts import add_phone, add_survivor, alerts_of, build_world


@pytest.fixture()
def world(app):
    return build_world()


def _html(resp) -> str:
    return resp.get_data(as_text=True)


def test_the_specialist_sees_the_alert_page_with_the_name(app, world):
    survivor = add_survivor(world)
    alert_id = alerts_of(world, "spec_a")[0]["id"]
    number = db.session.get(SurvivorAlert, alert_id).number
    client = world["spec_a"].client(app)
    listing = client.get("/victims/alerts", headers={"Accept": "text/html"})
    assert listing.status_code == 200
    assert number in _html(listing) and "Maria Lopez" in _html(listing)
    page = client.get(f"/victims/alerts/{alert_id}", headers={"Accept": "text/html"})
    assert page.status_code == 200
    html = _html(page)
    assert "Maria Lopez" in html and survivor.pseudonym in html
    assert "linked to case as victim" in html.lower()
    assert world["lead_a"].user.full_name in html and "<script>" not in html


def test_another_agencys_specialist_gets_404_not_the_alert(app, world):
    add_survivor(world)
    alert_id = alerts_of(world, "spec_a")[0]["id"]
    client = world["spec_hsi"].client(app)
    page = client.get(f"/victims/alerts/{alert_id}", headers={"Accept": "text/html"})
    assert page.status_code == 404 and "Maria" not in _html(page)
    api = client.get(f"/api/v1/victims/alerts/{alert_id}")
    assert api.status_code == 404
    assert api.get_json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/victims/alerts").get_json()["items"] == []
    assert client.get("/api/v1/victims/alerts/count").get_json() == {"open": 0}


def test_one_link_away_the_other_agency_sees_only_the_pseudonym(app, world):
    survivor = add_survivor(world)
    phone = add_phone(world, "(312) 555-0142")
    graph.add_link(actor=world["lead_a"].actor, case_id=world.case_a, source_id=survivor.id,
                   target_id=phone.id, type="CALLED")
    add_phone(world, "312.555.0142", case="b")
    caller = api_caller(app, world["spec_b"].user)
    items = caller.get("/api/v1/victims/alerts").get_json()["items"]
    assert len(items) == 1
    assert items[0]["label"] == survivor.pseudonym and items[0]["name"] is None
    page = world["spec_b"].client(app).get(f"/victims/alerts/{items[0]['id']}",
                                            headers={"Accept": "text/html"})
    assert survivor.pseudonym in _html(page) and "Maria" not in _html(page)
    assert "Operation Nightjar" not in _html(page)


def test_acknowledge_and_follow_up_through_the_api(app, world):
    add_survivor(world)
    alert_id = alerts_of(world, "spec_a")[0]["id"]
    caller = api_caller(app, world["spec_a"].user)
    assert caller.get("/api/v1/victims/alerts/count").get_json() == {"open": 1}
    resp = caller.post(f"/api/v1/victims/alerts/{alert_id}/acknowledge")
    assert resp.status_code == 200 and resp.get_json()["status"] == "acknowledged"
    assert caller.post(f"/api/v1/victims/alerts/{alert_id}/acknowledge").status_code == 409
    assert caller.get("/api/v1/victims/alerts/count").get_json() == {"open": 0}
    bad = caller.post(f"/api/v1/victims/alerts/{alert_id}/follow-ups", json={"action": "x"})
    assert bad.status_code == 422 and "action" in bad.get_json()["error"]["fields"]
    long = caller.post(f"/api/v1/victims/alerts/{alert_id}/follow-ups",
                       json={"action": "referred", "note": "n" * 2001})
    assert long.status_code == 422
    ok = caller.post(f"/api/v1/victims/alerts/{alert_id}/follow-ups",
                     json={"action": "referred", "note": "Referred to legal aid."})
    assert ok.status_code == 201
    body = ok.get_json()
    assert [f["action"] for f in body["follow_ups"]] == ["referred"]
    assert body["follow_ups"][0]["by"] == world["spec_a"].user.full_name


def test_investigators_may_not_work_alerts(app, world):
    add_survivor(world)
    alert_id = alerts_of(world, "spec_a")[0]["id"]
    caller = api_caller(app, world["lead_a"].user)
    assert caller.get(f"/api/v1/victims/alerts/{alert_id}").status_code == 200  # the lead reads
    assert caller.post(f"/api/v1/victims/alerts/{alert_id}/acknowledge").status_code == 403
    assert caller.post(f"/api/v1/victims/alerts/{alert_id}/follow-ups",
                       json={"action": "contacted"}).status_code == 403


def test_the_follow_up_form_needs_its_csrf_token(app, world):
    add_survivor(world)
    alert_id = alerts_of(world, "spec_a")[0]["id"]
    client = world["spec_a"].client(app)
    url = f"/victims/alerts/{alert_id}"
    forged = client.post(f"{url}/follow-ups", data={"action": "contacted"},
                         headers={"Accept": "text/html"})
    assert forged.status_code == 400
    token = csrf_from(client.get(url, headers={"Accept": "text/html"}).data)
    bad = client.post(f"{url}/follow-ups", data={"action": "", "csrf_token": token},
                      headers={"Accept": "text/html"})
    assert bad.status_code == 422 and "action" in _html(bad)
    ok = client.post(f"{url}/follow-ups",
                     data={"action": "contacted", "note": "Met at the clinic.",
                           "csrf_token": token}, headers={"Accept": "text/html"})
    assert ok.status_code == 302
    page = _html(client.get(url, headers={"Accept": "text/html"}))
    assert "Met at the clinic." in page and "Acknowledged" in page
    again = client.post(f"{url}/acknowledge", data={"csrf_token": token},
                        headers={"Accept": "text/html"})
    assert again.status_code == 409


def test_anonymous_callers_are_sent_away(client):
    assert client.get("/api/v1/victims/alerts/count").status_code == 401
    assert client.get("/victims/alerts", headers={"Accept": "text/html"}).status_code == 302


def test_bad_list_query_is_422(app, world):
    caller = api_caller(app, world["spec_a"].user)
    resp = caller.get("/api/v1/victims/alerts?status=lost")
    assert resp.status_code == 422 and "status" in resp.get_json()["error"]["fields"]
    assert caller.get("/api/v1/victims/alerts?page=0").status_code == 422


def test_the_specialists_badge_polls_the_alert_count_and_the_list_refreshes(app, world):
    html = _html(world["spec_a"].client(app).get("/victims/alerts"))
    badge = re.search(r'<span id="alerts-badge"[^>]*>', html).group(0)
    assert "data-live-badge" in badge and 'data-url="/api/v1/victims/alerts/count"' in badge
    assert 'data-field="open"' in badge  # the count API's field, read by live-badge.js
    assert "/static/js/live-badge.js" in html and "/static/js/alerts-list.js" in html
    count = api_caller(app, world["spec_a"].user).get("/api/v1/victims/alerts/count").get_json()
    assert isinstance(count["open"], int)
