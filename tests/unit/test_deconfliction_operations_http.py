"""Operations over HTTP: every API response and page that shows an operation hit
shows the other operation only by agency, point of contact, kind and time (never
its address, coordinates, name or case); the form, its errors and CSRF; who may
plan, open, cancel; the coordinator dashboard and how it degrades without the
vendored map and chart libraries."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from taskforce.audit.models import AuditEvent
from taskforce.deconfliction import views
from taskforce.deconfliction.models import Operation
from taskforce.extensions import db
from tests.factories import csrf_from
from tests.factories_investigations import api_caller
from tests.unit.test_deconfliction_operations import MOTEL, offset
from tests.unit.test_deconfliction_world import build_world, ensure_deconfliction, person

OTHER_SIDE_KEYS = {"side", "mine", "agency", "identifier_kind", "poc", "acknowledged_at",
                   "operation_kind", "operation_kind_label", "starts_at", "ends_at"}
B_PLACE = offset(*MOTEL, 300, 45)


@pytest.fixture()
def world(app):
    ensure_deconfliction(app)
    return build_world()


def tomorrow_at(hour: int) -> datetime:
    day = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    return day.replace(hour=hour)


def api(app, world, who):
    return api_caller(app, world.people[who].user)


def page(client, url, status=200):
    resp = client.get(url, headers={"Accept": "text/html"})
    assert resp.status_code == status, (url, resp.status_code)
    return resp.get_data(as_text=True)


def submit(app, world, who, *, expect=201, **body):
    resp = api(app, world, who).post("/api/v1/deconfliction/operations", json=body)
    assert resp.status_code == expect, resp.get_json()
    return resp.get_json()


def assert_absent(text: str, forbidden: list[str], where: str) -> None:
    low = text.lower()
    for item in forbidden:
        assert item.lower() not in low, f"{item!r} shown in {where}"


def assert_reduced(hit: dict, *, own: set[str]) -> None:
    assert {s["side"] for s in hit["sides"] if s["mine"]} == own
    for s in hit["sides"]:
        if not s["mine"]:
            assert set(s) <= OTHER_SIDE_KEYS, f"other side shows {set(s) - OTHER_SIDE_KEYS}"
            assert s["operation_kind"] and s["starts_at"] and s["ends_at"]


@pytest.fixture()
def conflict(app, world):
    """A (Springfield, case A) plans a warrant at the motel; B (State Police, no case)
    plans a buy-bust 300 m away the same night, through the API."""
    start = tomorrow_at(21)
    a = submit(app, world, "a", kind="search_warrant", latitude=MOTEL[0], longitude=MOTEL[1],
               radius_m=150, starts_at=start.isoformat(),
               ends_at=(start + timedelta(hours=3)).isoformat(), case_id=world.cases["A"],
               name="Nightjar entry team", address="Motel 6, 3125 Wide Track Dr")
    b = submit(app, world, "b", kind="buy_bust", latitude=B_PLACE[0], longitude=B_PLACE[1],
               radius_m=200, starts_at=(start + timedelta(hours=1)).isoformat(),
               ends_at=(start + timedelta(hours=2)).isoformat(), undercover=True,
               name="Kestrel meet", address="Room 112, Red Roof Inn",
               poc={"name": "Sgt. Dana Rowe", "phone": "(217) 555-0142",
                    "email": "d.rowe@isp.example.gov"})
    return a, b


def secrets_of(world, who: str, a: dict, b: dict) -> list[str]:
    """What the *other* side's operation must never show to `who`."""
    if who == "a":
        op = b["operation"]
        extra = [world.case("B").number, world.case("B").title]
    else:
        op = a["operation"]
        extra = [world.case("A").number, world.case("A").title]
    return [op["name"], op["address"], f"{op['latitude']:.3f}", f"{op['longitude']:.3f}",
            f"{op['radius_m']} m", *extra]


def test_every_api_response_and_page_shows_only_agency_contact_kind_and_time(app, world,
                                                                            conflict):
    a, b = conflict
    assert a["hits"] == [] and len(b["hits"]) == 1
    hit = b["hits"][0]
    hit_id = hit["id"]
    # B's own answer: its own side in full, A's reduced
    assert_reduced(hit, own={"a"})
    other = next(s for s in hit["sides"] if not s["mine"])
    assert other["agency"] == "Springfield PD"
    assert other["operation_kind"] == "search_warrant"
    assert other["poc"]["name"] == world.people["a"].user.full_name
    mine = next(s for s in hit["sides"] if s["mine"])
    assert mine["operation"]["address"] == "Room 112, Red Roof Inn"
    assert_absent(str(b), secrets_of(world, "b", a, b), "B's submit answer")

    for who, own in (("a", {"b"}), ("b", {"a"}), ("coordinator", set())):
        forbidden = secrets_of(world, who, a, b)
        if who == "coordinator":
            forbidden = secrets_of(world, "a", a, b) + secrets_of(world, "b", a, b)
        caller = api(app, world, who)
        listing = caller.get("/api/v1/deconfliction/hits")
        assert [h["id"] for h in listing.get_json()["items"]] == [hit_id]
        assert_reduced(listing.get_json()["items"][0], own=own)
        assert_absent(listing.get_data(as_text=True), forbidden, f"{who}'s hit list")
        one = caller.get(f"/api/v1/deconfliction/hits/{hit_id}")
        assert one.status_code == 200
        assert_reduced(one.get_json(), own=own)
        assert_absent(one.get_data(as_text=True), forbidden, f"{who}'s hit")
        notes = caller.get("/api/v1/notifications")
        assert hit_id in [n["hit_id"] for n in notes.get_json()["items"]]
        assert_absent(notes.get_data(as_text=True), forbidden, f"{who}'s notifications")
        browser = world.people[who].browser(app)
        html = page(browser, "/deconfliction")
        assert f"/deconfliction/hits/{hit_id}" in html
        assert_absent(html, forbidden, f"{who}'s hit list page")
        html = page(browser, f"/deconfliction/hits/{hit_id}")
        assert "Buy-bust" in html and "Search warrant" in html
        assert_absent(html, forbidden, f"{who}'s hit page")

    # each side's own operation (API and page) lists the hit, the other side reduced
    for who, own_op in (("a", a), ("b", b)):
        forbidden = secrets_of(world, who, a, b)
        caller = api(app, world, who)
        detail = caller.get(f"/api/v1/deconfliction/operations/{own_op['operation']['id']}")
        assert detail.status_code == 200
        body = detail.get_json()
        assert body["address"] == own_op["operation"]["address"]
        assert [h["id"] for h in body["hits"]] == [hit_id]
        assert_absent(str(body["hits"]), forbidden, f"{who}'s operation API")
        assert_absent(caller.get("/api/v1/deconfliction/operations").get_data(as_text=True),
                      forbidden, f"{who}'s operation list API")
        browser = world.people[who].browser(app)
        html = page(browser, f"/deconfliction/operations/{own_op['operation']['id']}")
        assert own_op["operation"]["address"] in html and hit["number"] in html
        assert_absent(html, forbidden, f"{who}'s operation page")
        assert_absent(page(browser, "/deconfliction/operations"), forbidden,
                      f"{who}'s operation list page")

    # the workflow's answers, for A (the other side is B)
    caller = api(app, world, "a")
    for url, payload in ((f"/api/v1/deconfliction/hits/{hit_id}/acknowledge", None),
                         (f"/api/v1/deconfliction/hits/{hit_id}/coordinate", None),
                         (f"/api/v1/deconfliction/hits/{hit_id}/resolve",
                          {"resolution": "joint_investigation", "note": "One team."})):
        resp = caller.post(url, json=payload)
        assert resp.status_code == 200, resp.get_json()
        assert_reduced(resp.get_json(), own={"b"})
        assert_absent(resp.get_data(as_text=True), secrets_of(world, "a", a, b), url)


def test_the_other_side_cannot_open_or_cancel_an_operation(app, world, conflict):
    a, _b = conflict
    a_id = a["operation"]["id"]
    for who in ("b", "outsider", "coordinator", "c"):
        caller = api(app, world, who)
        assert caller.get(f"/api/v1/deconfliction/operations/{a_id}").status_code == 404
        assert caller.post(f"/api/v1/deconfliction/operations/{a_id}/cancel").status_code == 404
        page(world.people[who].browser(app), f"/deconfliction/operations/{a_id}", status=404)
    assert db.session.get(Operation, a_id).cancelled_at is None
    denied = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action.like("deconfliction.operation.%"), AuditEvent.outcome == "denied"))
    assert denied >= 8
    resp = api(app, world, "a").post(f"/api/v1/deconfliction/operations/{a_id}/cancel")
    assert resp.status_code == 200 and resp.get_json()["cancelled_at"]
    again = api(app, world, "a").post(f"/api/v1/deconfliction/operations/{a_id}/cancel")
    assert again.status_code == 409


@pytest.mark.parametrize("role", ["prosecutor", "victim_specialist", "admin"])
def test_roles_that_do_not_plan_operations_are_refused(app, world, role):
    who = person(world.agencies["spd"], roles=(role,))
    start = tomorrow_at(9)
    resp = api_caller(app, who.user).post("/api/v1/deconfliction/operations", json={
        "kind": "surveillance", "latitude": 39.8, "longitude": -89.6, "radius_m": 100,
        "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=1)).isoformat()})
    assert resp.status_code == 403
    page(who.browser(app), "/deconfliction/operations/new", status=403)
    assert db.session.scalar(select(func.count()).select_from(Operation)) == 0


@pytest.mark.parametrize("body, field", [
    ({"radius_m": 5}, "radius_m"),
    ({"latitude": "north"}, "latitude"),
    ({"kind": "raid"}, "kind"),
    ({"starts_at": "2031-05-01T21:00:00"}, "starts_at"),
])
def test_bad_api_input_is_422_with_the_field(app, world, body, field):
    start = tomorrow_at(10)
    payload = {"kind": "surveillance", "latitude": 39.8, "longitude": -89.6, "radius_m": 100,
               "starts_at": start.isoformat(),
               "ends_at": (start + timedelta(hours=1)).isoformat()} | body
    resp = api(app, world, "a").post("/api/v1/deconfliction/operations", json=payload)
    assert resp.status_code == 422
    assert field in str(resp.get_json()["error"])
    assert db.session.scalar(select(func.count()).select_from(Operation)) == 0


def test_the_form_plans_an_operation_and_shows_errors(app, world):
    browser = world.people["a"].browser(app)
    html = page(browser, "/deconfliction/operations/new")
    assert world.case("A").number in html  # own cases to choose from
    assert world.case("B").number not in html
    start = tomorrow_at(20)
    form = {"csrf_token": csrf_from(html), "kind": "surveillance", "name": "Watch",
            "case_id": str(world.cases["A"]), "address": "Motel 6",
            "latitude": str(MOTEL[0]), "longitude": str(MOTEL[1]), "radius_m": "150",
            "starts_at": start.strftime("%Y-%m-%dT%H:%M"),
            "ends_at": (start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"),
            "undercover": "on"}
    bad = browser.post("/deconfliction/operations/new", data=form | {"radius_m": "1"},
                       headers={"Accept": "text/html"})
    assert bad.status_code == 422 and "radius m" in bad.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Operation)) == 0
    no_csrf = browser.post("/deconfliction/operations/new",
                           data={k: v for k, v in form.items() if k != "csrf_token"},
                           headers={"Accept": "text/html"})
    assert no_csrf.status_code == 400
    ok = browser.post("/deconfliction/operations/new", data=form,
                      headers={"Accept": "text/html"})
    assert ok.status_code == 302
    op = db.session.scalars(select(Operation)).one()
    assert op.starts_at == start and op.undercover and op.case_id == world.cases["A"]
    html = page(browser, ok.headers["Location"])
    assert "No other agency had an operation there" in html and "Motel 6" in html
    assert 'data-testid="cancel-operation"' in html


def test_dashboard_for_coordinators_only_and_without_places_names_or_cases(app, world,
                                                                         conflict):
    a, b = conflict
    for who in ("a", "b", "outsider"):
        assert api(app, world, who).get("/api/v1/deconfliction/dashboard").status_code == 403
        page(world.people[who].browser(app), "/deconfliction/dashboard", status=403)
    resp = api(app, world, "coordinator").get("/api/v1/deconfliction/dashboard")
    assert resp.status_code == 200
    data = resp.get_json()
    assert data["open_total"] == 1 and data["totals"]["operation_hit_rate"] == 1.0
    assert {r["agency"]: r["under_1d"] for r in data["open_by_agency"]} == {
        "Springfield PD": 1, "Illinois State Police": 1}
    assert sorted(o["kind"] for o in data["upcoming"]) == ["buy_bust", "search_warrant"]
    assert all(o["in_conflict"] for o in data["upcoming"])
    names = [a["operation"]["name"], a["operation"]["address"], b["operation"]["name"],
             b["operation"]["address"], world.case("A").number, world.case("A").title]
    assert_absent(resp.get_data(as_text=True), names, "the dashboard API")
    html = page(world.people["coordinator"].browser(app), "/deconfliction/dashboard")
    assert_absent(html, names, "the dashboard page")
    assert 'data-testid="upcoming-operations"' in html and "Buy-bust" in html
    assert "js/deconfliction-dashboard.js" in html


def test_dashboard_degrades_to_tables_without_the_vendored_libraries(app, world, conflict,
                                                                     monkeypatch):
    browser = world.people["coordinator"].browser(app)
    html = page(browser, "/deconfliction/dashboard")
    present = views._vendor_present()
    if all(present.values()):
        assert "vendor/leaflet/leaflet.js" in html and "vendor/chart.js/chart.umd.min.js" in html
        assert 'data-map="on"' in html
    monkeypatch.setattr(views, "VENDOR", {k: "vendor/missing/" + k for k in views.VENDOR})
    html = page(browser, "/deconfliction/dashboard")
    assert "vendor/" not in html and 'data-map="off"' in html and 'data-charts="off"' in html
    assert 'data-testid="open-by-agency"' in html and 'data-testid="weeks"' in html
    assert "Springfield PD" in html  # the figures are there as tables
