"""Deconfliction over HTTP: every API response and page that shows a hit shows the
other side only by agency, point of contact and identifier kind; the workflow and
who may move it; notifications for the live badge; checks; bad input."""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from taskforce.deconfliction import blind
from taskforce.deconfliction.models import Hit, TargetRegistration
from taskforce.extensions import db
from tests.factories import csrf_from, make_agency
from tests.factories_investigations import api_caller
from tests.unit.test_deconfliction_world import build_world, ensure_deconfliction, person

PHONE_A = "(312) 555-0199"
PHONE_B = "312.555.0199"
E164 = "+13125550199"
PHONE_DIGITS = ("3125550199", "555-0199", "555.0199", "555 0199", "5550199")
OTHER_SIDE_KEYS = {"side", "mine", "agency", "identifier_kind", "poc", "acknowledged_at"}


@pytest.fixture(params=["plain", "blind"])
def mode(request, app):
    app.config["DECONFLICTION_BLIND_INDEX"] = request.param == "blind"
    blind.reset(app)
    yield request.param
    app.config["DECONFLICTION_BLIND_INDEX"] = None
    blind.reset(app)


@pytest.fixture()
def world(app):
    ensure_deconfliction(app)
    return build_world()


def api(app, world, who):
    return api_caller(app, world.people[who].user)


def page(client, url):
    resp = client.get(url, headers={"Accept": "text/html"})
    assert resp.status_code == 200, (url, resp.status_code)
    return resp.get_data(as_text=True)


def register(app, world, who, case, identifiers, expect=201):
    resp = api(app, world, who).post("/api/v1/deconfliction/registrations",
                                     json={"case_id": world.cases[case],
                                           "identifiers": identifiers})
    assert resp.status_code == expect, resp.get_json()
    return resp


def assert_reduced(hit: dict, *, own: set[str]) -> None:
    """The JSON of one hit: sides not in `own` carry nothing but agency, POC, kind."""
    assert {s["side"] for s in hit["sides"] if s["mine"]} == own
    for s in hit["sides"]:
        if not s["mine"]:
            assert set(s) <= OTHER_SIDE_KEYS, f"other side shows {set(s) - OTHER_SIDE_KEYS}"
            assert set(s["poc"]) == {"name", "phone", "email"}


def assert_absent(text: str, forbidden: list[str], where: str) -> None:
    low = text.lower()
    for item in forbidden:
        assert item.lower() not in low, f"{item!r} shown in {where}"


@pytest.fixture()
def conflict(app, world, mode):
    """A registers a phone and Jon Smith; B registers the phone (other spelling) and
    John Smyth through the API: an exact and a possible hit."""
    register(app, world, "a", "A", [{"kind": "phone", "value": PHONE_A},
                                    {"kind": "person", "value": "Jon Smith",
                                     "dob": "1990-04-12"}])
    resp = register(app, world, "b", "B", [{"kind": "phone", "value": PHONE_B},
                                           {"kind": "person", "value": "John Smyth",
                                            "dob": "1990-04-12"}])
    return resp


def _case_secrets(world, name: str) -> list[str]:
    case = world.case(name)
    return [case.number, case.title]


def test_every_api_response_and_page_shows_only_the_other_sides_contact(app, world, conflict,
                                                                        mode):
    a_secrets = _case_secrets(world, "A") + [PHONE_A, "Jon Smith", "JON|SMITH"]
    b_secrets = _case_secrets(world, "B") + [PHONE_B, "Smyth"]
    if mode == "blind":  # nothing shows the phone at all: no plaintext is kept
        a_secrets += [E164, *PHONE_DIGITS]
        b_secrets += [E164, *PHONE_DIGITS]

    # B, who registered: the answer of the registration itself
    body = conflict.get_json()
    assert sorted(h["kind"] for h in body["hits"]) == ["exact", "possible"]
    for h in body["hits"]:
        assert_reduced(h, own={"a"})
        other = next(s for s in h["sides"] if not s["mine"])
        assert other["agency"] == "Springfield PD"
        assert other["poc"]["name"] == world.people["a"].user.full_name
        assert other["poc"]["email"] == world.people["a"].user.email
        assert other["identifier_kind"] in ("phone", "person")
    assert_absent(conflict.get_data(as_text=True), a_secrets, "B's registration answer")

    hit_ids = [h["id"] for h in body["hits"]]
    seen_by = {"a": (b_secrets, {"b"}), "b": (a_secrets, {"a"}),
               "coordinator": (a_secrets + b_secrets, set())}
    for who, (forbidden, own) in seen_by.items():
        caller = api(app, world, who)
        listing = caller.get("/api/v1/deconfliction/hits")
        assert listing.status_code == 200
        assert sorted(h["id"] for h in listing.get_json()["items"]) == sorted(hit_ids)
        for h in listing.get_json()["items"]:
            assert_reduced(h, own=own)
        assert_absent(listing.get_data(as_text=True), forbidden, f"{who}'s hit list")
        for hid in hit_ids:
            one = caller.get(f"/api/v1/deconfliction/hits/{hid}")
            assert one.status_code == 200
            assert_reduced(one.get_json(), own=own)
            assert_absent(one.get_data(as_text=True), forbidden, f"{who}'s hit {hid}")
        notes = caller.get("/api/v1/notifications")
        assert_absent(notes.get_data(as_text=True), forbidden, f"{who}'s notifications")
        browser = world.people[who].browser(app)
        html = page(browser, "/deconfliction")
        for hid in hit_ids:
            assert f"/deconfliction/hits/{hid}" in html
        assert_absent(html, forbidden, f"{who}'s hit list page")
        for hid in hit_ids:
            assert_absent(page(browser, f"/deconfliction/hits/{hid}"), forbidden,
                          f"{who}'s hit page {hid}")

    # the own side does show the own case (and, with a plain index, the identifier)
    a_view = api(app, world, "a").get(f"/api/v1/deconfliction/hits/{hit_ids[0]}").get_json()
    mine = next(s for s in a_view["sides"] if s["mine"])
    assert mine["case"]["number"] == world.case("A").number
    if mode == "plain":
        assert mine["identifier"] in ("+1 312-555-0199", "Jon Smith (DOB 1990-04-12)")
    else:
        assert mine["identifier"] is None

    # the workflow's answers and pages, for A (the other side is B)
    caller = api(app, world, "a")
    exact = next(h["id"] for h in body["hits"] if h["kind"] == "exact")
    for url, payload in ((f"/api/v1/deconfliction/hits/{exact}/acknowledge", None),
                         (f"/api/v1/deconfliction/hits/{exact}/coordinate", None),
                         (f"/api/v1/deconfliction/hits/{exact}/resolve",
                          {"resolution": "joint_investigation", "note": "Call set up."})):
        resp = caller.post(url, json=payload)
        assert resp.status_code == 200, resp.get_json()
        assert_reduced(resp.get_json(), own={"b"})
        assert_absent(resp.get_data(as_text=True), b_secrets, url)
    html = page(world.people["a"].browser(app), f"/deconfliction/hits/{exact}")
    assert "Joint investigation" in html
    assert_absent(html, b_secrets, "A's resolved hit page")

    # a check by a third agency: both registrants reduced to their contact
    check = api(app, world, "c").post("/api/v1/deconfliction/check", json={
        "identifiers": [{"kind": "phone", "value": "+1 (312) 555 0199"}]})
    assert check.status_code == 200
    matches = check.get_json()["matches"]
    assert sorted(m["other"]["agency"] for m in matches) == [
        "Illinois State Police", "Springfield PD"]
    for m in matches:
        assert set(m["other"]) == {"agency", "identifier_kind", "poc"}
    assert_absent(check.get_data(as_text=True),
                  _case_secrets(world, "A") + _case_secrets(world, "B") + [PHONE_A, PHONE_B],
                  "C's check")


def test_check_page(app, world, mode):
    register(app, world, "a", "A", [{"kind": "phone", "value": PHONE_A}])
    browser = world.people["c"].browser(app)
    html = page(browser, "/deconfliction/check")
    resp = browser.post("/deconfliction/check", data={
        "csrf_token": csrf_from(html), "identifiers": f"phone: {PHONE_B}\nemail: x@example.com"},
        headers={"Accept": "text/html"})
    assert resp.status_code == 200
    text = resp.get_data(as_text=True)
    assert "Springfield PD" in text and world.people["a"].user.full_name in text
    assert_absent(text, _case_secrets(world, "A") + [PHONE_A], "C's check page")
    bad = browser.post("/deconfliction/check", data={
        "csrf_token": csrf_from(html), "identifiers": "phone: nope\nwhatever"},
        headers={"Accept": "text/html"})
    assert bad.status_code == 422
    assert "identifier 0.value" in bad.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(TargetRegistration)) == 1


def test_check_is_for_case_work_roles_only(app, world):
    admin = person(world.agencies["spd"], roles=("admin",))
    caller = api_caller(app, admin.user)
    resp = caller.post("/api/v1/deconfliction/check",
                       json={"identifiers": [{"kind": "phone", "value": PHONE_A}]})
    assert resp.status_code == 403
    assert caller.get("/deconfliction/check").status_code == 403


def test_workflow_over_http_and_who_may_move_a_hit(app, world, mode):
    register(app, world, "a", "A", [{"kind": "phone", "value": PHONE_A}])
    hid = register(app, world, "b", "B",
                   [{"kind": "phone", "value": PHONE_B}]).get_json()["hits"][0]["id"]
    base = f"/api/v1/deconfliction/hits/{hid}"
    for who in ("c", "outsider", "a2"):  # not on either side: as if there were no hit
        caller = api(app, world, who)
        assert caller.get(base).status_code == 404
        assert caller.post(f"{base}/acknowledge").status_code == 404
        assert caller.post(f"{base}/resolve", json={"resolution": "no_action"}).status_code == 404
        assert hid not in [h["id"] for h in caller.get(
            "/api/v1/deconfliction/hits").get_json()["items"]]
        assert caller.get(f"/deconfliction/hits/{hid}").status_code == 404
    # a fourth agency reading case B: sees the hit, may not move it
    dea = make_agency(name="DEA Chicago", ori="ILDEA0000", level="federal")
    reader = person(dea)
    caller = api(app, world, "b")
    assert caller.post(f"/api/v1/cases/{world.cases['B']}/partners",
                       json={"agency_id": dea.id, "access": "read"}).status_code == 201
    rc = api_caller(app, reader.user)
    assert rc.get(base).status_code == 200
    assert rc.post(f"{base}/acknowledge").status_code == 403
    # invalid transitions and input
    a = api(app, world, "a")
    assert a.post(f"{base}/coordinate").status_code == 409
    assert a.post(f"{base}/resolve", json={"resolution": "no_action"}).status_code == 409
    assert a.post(f"{base}/acknowledge").status_code == 200
    assert a.post(f"{base}/acknowledge").status_code == 409
    bad = a.post(f"{base}/resolve", json={"resolution": "shrug"})
    assert bad.status_code == 422 and "resolution" in bad.get_json()["error"]["fields"]
    # pages: B acknowledges and resolves through the forms
    browser = world.people["b"].browser(app)
    html = page(browser, f"/deconfliction/hits/{hid}")
    assert 'data-testid="acknowledge"' in html and 'data-testid="resolve"' in html
    token = csrf_from(html)
    resp = browser.post(f"/deconfliction/hits/{hid}/acknowledge", data={"csrf_token": token},
                        headers={"Accept": "text/html"})
    assert resp.status_code == 302
    again = browser.post(f"/deconfliction/hits/{hid}/acknowledge", data={"csrf_token": token},
                         headers={"Accept": "text/html"})
    assert again.status_code == 409 and "Already acknowledged" in again.get_data(as_text=True)
    resp = browser.post(f"/deconfliction/hits/{hid}/resolve", data={
        "csrf_token": token, "resolution": "same_target", "note": "Same man."},
        headers={"Accept": "text/html"})
    assert resp.status_code == 302
    html = page(browser, f"/deconfliction/hits/{hid}")
    assert "Resolved" in html and "Same target" in html and "Same man." in html
    assert 'data-testid="resolve"' not in html
    assert db.session.get(Hit, hid).status == "resolved"


def test_history_names_people_of_your_own_agency_only(app, world):
    register(app, world, "a", "A", [{"kind": "phone", "value": PHONE_A}])
    hid = register(app, world, "b", "B",
                   [{"kind": "phone", "value": PHONE_B}]).get_json()["hits"][0]["id"]
    api(app, world, "b").post(f"/api/v1/deconfliction/hits/{hid}/acknowledge")
    a_events = api(app, world, "a").get(f"/api/v1/deconfliction/hits/{hid}").get_json()["events"]
    assert a_events[-1]["by"] == "Illinois State Police"
    b_events = api(app, world, "b").get(f"/api/v1/deconfliction/hits/{hid}").get_json()["events"]
    assert b_events[-1]["by"] == world.people["b"].user.full_name


def test_notifications_for_the_live_badge(app, world):
    register(app, world, "a", "A", [{"kind": "phone", "value": PHONE_A}])
    hid = register(app, world, "b", "B",
                   [{"kind": "phone", "value": PHONE_B}]).get_json()["hits"][0]["id"]
    number = db.session.get(Hit, hid).number
    for who in ("a", "b", "coordinator"):
        body = api(app, world, who).get("/api/v1/notifications").get_json()
        assert body["unread"] == 1
        assert body["items"][0]["hit_number"] == number
        assert body["items"][0]["url"] == f"/deconfliction/hits/{hid}"
    for who in ("c", "outsider"):
        assert api(app, world, who).get("/api/v1/notifications").get_json()["unread"] == 0
    coord = api(app, world, "coordinator")
    assert coord.post("/api/v1/notifications", json={"ids": ["x"]}).status_code == 422
    assert coord.post("/api/v1/notifications", json={}).status_code == 422
    resp = coord.post("/api/v1/notifications", json={"all": True})
    assert resp.get_json() == {"marked": 1, "unread": 0}
    # opening the hit marks A's read
    a_browser = world.people["a"].browser(app)
    page(a_browser, f"/deconfliction/hits/{hid}")
    assert api(app, world, "a").get("/api/v1/notifications").get_json()["unread"] == 0


def test_registration_api_input_and_access(app, world):
    caller = api(app, world, "a")
    bad = caller.post("/api/v1/deconfliction/registrations", json={
        "case_id": world.cases["A"],
        "identifiers": [{"kind": "phone", "value": "12"}, {"kind": "person", "value": "Jo"}]})
    assert bad.status_code == 422
    assert set(bad.get_json()["error"]["fields"]) == {"identifiers.0.value",
                                                      "identifiers.1.value"}
    unknown = caller.post("/api/v1/deconfliction/registrations", json={
        "case_id": world.cases["A"], "identifiers": [{"kind": "teleport", "value": "x"}]})
    assert unknown.status_code == 422
    other = caller.post("/api/v1/deconfliction/registrations", json={
        "case_id": world.cases["B"], "identifiers": [{"kind": "phone", "value": PHONE_A}]})
    assert other.status_code == 404
    assert db.session.scalar(select(func.count()).select_from(TargetRegistration)) == 0
    ok = register(app, world, "a", "A", [{"kind": "vehicle_plate", "value": "abc 1234",
                                          "state": "TX"}])
    reg = ok.get_json()["registrations"][0]
    assert reg["kind"] == "vehicle_plate" and reg["case_id"] == world.cases["A"]
    renewed = caller.post(f"/api/v1/deconfliction/registrations/{reg['id']}/renew",
                          json={"days": 30})
    assert renewed.status_code == 200
    assert api(app, world, "b").post(
        f"/api/v1/deconfliction/registrations/{reg['id']}/renew", json={}).status_code == 404


def test_the_hits_badge_polls_the_unread_count_and_builds_rows_without_html(app, world):
    html = page(world.people["a"].browser(app), "/deconfliction")
    badge = re.search(r'<span id="hits-badge"[^>]*>', html).group(0)
    assert 'data-url="/api/v1/notifications"' in badge and 'data-field="unread"' in badge
    assert "/static/js/live-badge.js" in html and "/static/js/hits-list.js" in html
    for script in ("live-badge.js", "hits-list.js"):
        js = app.test_client().get(f"/static/js/{script}").get_data(as_text=True)
        assert "innerHTML" not in js  # rows are built from text nodes only


def test_anonymous_callers_are_refused_everywhere(app, world):
    client = app.test_client()
    rules = [r for r in app.url_map.iter_rules()
             if r.rule.startswith(("/deconfliction", "/api/v1/deconfliction",
                                   "/api/v1/notifications"))]
    assert len(rules) >= 10
    for rule in rules:
        url = re.sub(r"<[^>]+>", "1", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            resp = client.open(url, method=method, headers={"Accept": "application/json"},
                               data=json.dumps({}), content_type="application/json")
            assert resp.status_code == 401, (method, url, resp.status_code)
