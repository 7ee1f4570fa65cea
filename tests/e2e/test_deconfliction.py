"""Deconfliction in real Chromium: a coordinator watching the hits page sees a new
hit appear without reloading and works it to resolved; the coordinator dashboard
draws the next 72 hours' operations on the map and the weekly charts."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from playwright.sync_api import expect

from taskforce.deconfliction import operations, service
from tests.unit.test_deconfliction_world import build_world, ensure_deconfliction

pytestmark = pytest.mark.e2e

PHONE_A = "(312) 555-0199"
PHONE_B = "312.555.0199"


def sign_in(page, base, person):
    page.goto(f"{base}/login")
    page.fill("#username", person.user.username)
    page.fill("#password", person.password)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/login/mfa"))
    page.fill("#code", pyotp.TOTP(person.secret).now())
    page.click("button[type=submit]")
    expect(page.get_by_test_id("whoami")).to_have_text(person.user.username)


@pytest.fixture()
def world(app):
    ensure_deconfliction(app)
    return build_world()


def test_a_new_hit_appears_without_reloading_and_the_coordinator_resolves_it(
        app, live_server, page, world):
    service.register(actor=world.people["a"].actor, case_id=world.cases["A"],
                     identifiers=[("phone", PHONE_A)])
    coordinator = world.people["coordinator"]
    sign_in(page, live_server, coordinator)
    page.goto(f"{live_server}/deconfliction")
    expect(page.get_by_test_id("no-hits")).to_be_visible()
    rows = page.locator("#hit-list tbody tr")
    expect(rows).to_have_count(0)
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    # another agency registers the same phone, in another spelling, meanwhile
    result = service.register(actor=world.people["b"].actor, case_id=world.cases["B"],
                              identifiers=[("phone", PHONE_B)])
    number = result.hits[0].number

    expect(rows).to_have_count(1, timeout=20_000)
    expect(rows.first).to_contain_text(number)
    expect(rows.first).to_contain_text("Exact match")
    expect(page.locator("#hits-badge")).to_have_text("1")
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    # the coordinator sees each side only by agency and point of contact
    text = rows.first.inner_text()
    for secret in (world.case("A").number, world.case("B").number, "555-0199", "5550199"):
        assert secret not in text

    rows.first.get_by_role("link", name=number).click()
    expect(page.get_by_test_id("hit-number")).to_have_text(number)
    expect(page.get_by_test_id("hit-status")).to_have_text("New")
    page.get_by_test_id("acknowledge").click()
    expect(page.get_by_test_id("hit-status")).to_have_text("Acknowledged")
    page.select_option("#resolution", "joint_investigation")
    page.fill("#note", "Both teams meet Monday.")
    page.get_by_test_id("resolve").click()
    expect(page.get_by_test_id("hit-status")).to_have_text("Resolved")
    expect(page.locator("main")).to_contain_text("Joint investigation")
    expect(page.get_by_test_id("hit-history")).to_contain_text("resolved")

    page.goto(f"{live_server}/deconfliction?status=resolved")
    expect(page.locator("#hit-list tbody tr")).to_have_count(1)
    expect(page.locator("#hit-list tbody tr").first).to_contain_text("Resolved")


def test_the_dashboard_draws_operations_on_the_map_and_the_charts(app, live_server, page,
                                                                 world):
    start = (datetime.now(UTC) + timedelta(hours=20)).replace(microsecond=0)
    for who, lat in (("a", 39.80172), ("b", 39.80300)):
        operations.submit(actor=world.people[who].actor, kind="search_warrant",
                          latitude=lat, longitude=-89.64371, radius_m=200,
                          starts_at=start.isoformat(),
                          ends_at=(start + timedelta(hours=3)).isoformat())
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, live_server, world.people["coordinator"])
    page.goto(f"{live_server}/deconfliction/dashboard")
    expect(page.get_by_test_id("upcoming-operations").locator("tbody tr")).to_have_count(2)
    holder = page.get_by_test_id("ops-map")
    assert holder.get_attribute("data-map") == "on", (
        "the vendored Leaflet is not installed (scripts/services.py install assets)")
    expect(holder).to_have_attribute("data-drawn", "2", timeout=10_000)
    expect(holder).to_be_visible()
    assert page.locator("#ops-map path.leaflet-interactive").count() >= 2
    if holder.get_attribute("data-charts") == "on":
        expect(holder).to_have_attribute("data-charted", "12", timeout=10_000)
        expect(page.locator("#chart-hits")).to_be_visible()
    assert not [e for e in errors if "Content Security Policy" in e], errors
