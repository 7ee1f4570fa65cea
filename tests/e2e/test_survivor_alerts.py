"""Survivor alerts in real Chromium (issue #5).

Springfield PD's victim specialist has the dashboard open. A Springfield PD
investigator, on the case's network page in another browser, adds a survivor to
the case. The commit's hook sends the survivor-alert job (Celery eager here: no
broker, so it runs in-process right after the commit), and the specialist's
"Survivor alerts" nav badge (static/js/live-badge.js) shows the count without
a reload. The specialist opens the alert: the survivor's pseudonym, and her name
too, since a victim specialist of the case's agency has need to know
(victims/policy.py: reveals_name); acknowledges it and records a follow-up. A
victim specialist of an agency with nothing to do with the case sees no badge
and no alert, and cannot open it by its address.

Neo4j is not needed: its address refuses, and the graph's outbox rows wait.
"""
from __future__ import annotations

import re
from datetime import date

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from taskforce.extensions import db
from taskforce.graph import service as graph
from taskforce.graph.models import Entity
from taskforce.investigations.models import Case
from taskforce.victims.models import SurvivorAlert
from tests.e2e.conftest import account, sign_in
from tests.factories import make_agency
from tests.factories_graph import closed_bolt_uri, ensure_graph_registered
from tests.factories_investigations import actor_for, make_case

pytestmark = pytest.mark.e2e

NAME = "Maria Lopez"


@pytest.fixture()
def app_environ(app_environ):
    return {**app_environ, "NEO4J_URI": closed_bolt_uri(), "NEO4J_PASSWORD": "unused"}


@pytest.fixture()
def second_page(browser):
    """Another person at another computer: a browser context of its own (own cookies)."""
    pages = []

    def new():
        context = browser.new_context(viewport={"width": 1400, "height": 1300})
        page = context.new_page()
        page.set_default_timeout(10_000)
        pages.append(context)
        return page

    yield new
    for context in pages:
        context.close()


def adult_dob() -> str:
    today = date.today()
    return date(today.year - 24, today.month, min(today.day, 28)).isoformat()


def badge(page):
    return page.locator("#alerts-badge")


def test_a_specialist_sees_a_new_survivor_alert_live_and_works_it(
        app, live_server, page, second_page):
    ensure_graph_registered(app)
    spd, hsi = make_agency(name="Springfield PD"), make_agency(name="HSI Chicago")
    investigator = account(spd)
    specialist = account(spd, roles=("victim_specialist",))
    outsider = account(hsi, roles=("victim_specialist",))
    case_id = make_case(actor_for(investigator.user), title="Operation Nightjar")

    # the specialist has the dashboard open; no alert yet
    sign_in(page, live_server, specialist)
    nav_link = page.locator("nav[aria-label=main] a", has_text="Survivor alerts")
    expect(nav_link).to_be_visible()
    expect(badge(page)).to_have_attribute("data-count", "0")
    expect(badge(page)).to_be_hidden()
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    # so has the specialist of an agency with no part in the case
    other = second_page()
    sign_in(other, live_server, outsider)
    expect(badge(other)).to_have_attribute("data-count", "0")

    # the investigator adds the survivor to the case on its network page
    desk = second_page()
    sign_in(desk, live_server, investigator)
    resp = desk.goto(f"{live_server}/cases/{case_id}/network")
    assert resp.status == 200
    form = desk.get_by_test_id("add-entity")
    form.locator("#entity-kind").select_option("person")
    form.locator("#entity-label").fill(NAME)
    form.locator("#entity-role").select_option("victim")
    form.locator("#entity-dob").fill(adult_dob())
    form.locator("button[type=submit]").click()
    expect(desk.get_by_role("alert")).to_contain_text("Entity added.")
    assert NAME in desk.content()  # the case lead sees her name

    # the alert was raised for Springfield PD only (the job ran after the commit)
    db.session.expire_all()
    (raised,) = db.session.scalars(select(SurvivorAlert)).all()
    assert raised.agency_id == spd.id and raised.case_id == case_id
    pseudonym = db.session.get(Entity, raised.entity_id).pseudonym
    assert pseudonym and NAME not in pseudonym

    # the specialist's badge counts it, with no reload (the badge polls every 4 s)
    expect(badge(page)).to_have_text("1", timeout=15_000)
    expect(badge(page)).to_be_visible()
    expect(badge(page)).to_have_attribute("aria-label", "1 new survivor alert")
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"

    # the specialist opens it from the nav
    nav_link.click()
    rows = page.locator("#alert-list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(raised.number)
    rows.first.get_by_role("link", name=raised.number).click()
    expect(page).to_have_url(re.compile(rf"/victims/alerts/{raised.id}$"))
    expect(page.get_by_test_id("alert-number")).to_have_text(raised.number)
    expect(page.get_by_test_id("alert-status")).to_have_text("New")
    # a specialist of the case's agency has need to know: the name, and the pseudonym
    subject = page.get_by_test_id("subject")
    expect(subject).to_have_text(NAME)
    expect(subject).to_have_class(re.compile(r"\brevealed\b"))
    expect(page.locator("main")).to_contain_text(f"({pseudonym})")
    expect(page.get_by_test_id("why")).to_contain_text("victim")
    expect(page.get_by_test_id("poc-name")).to_have_text(investigator.user.full_name)

    # acknowledge, then record what was done
    page.get_by_test_id("acknowledge").click()
    expect(page.get_by_role("alert")).to_contain_text("Alert acknowledged.")
    expect(page.get_by_test_id("alert-status")).to_have_text("Acknowledged")
    expect(page.get_by_test_id("acknowledge")).to_have_count(0)
    page.select_option("#action", "services_offered")
    page.fill("#note", "Met at the hospital; shelter bed arranged.")
    page.get_by_test_id("record-follow-up").click()
    expect(page.get_by_role("alert")).to_contain_text("Follow-up recorded.")
    history = page.get_by_test_id("follow-ups").locator("tbody tr")
    expect(history).to_have_count(1)
    expect(history.first).to_contain_text("Services offered")
    expect(history.first).to_contain_text("Met at the hospital; shelter bed arranged.")
    expect(history.first).to_contain_text(specialist.user.full_name)
    # acknowledged: nothing new left, the badge clears
    expect(badge(page)).to_have_attribute("data-count", "0", timeout=15_000)
    expect(badge(page)).to_be_hidden()
    db.session.expire_all()
    assert db.session.get(SurvivorAlert, raised.id).status == "acknowledged"

    # the uninvolved agency's specialist: still no badge, no alert, not even by address
    assert other.evaluate("() => fetch('/api/v1/victims/alerts/count')"
                          ".then(r => r.json())") == {"open": 0}
    expect(badge(other)).to_have_attribute("data-count", "0")
    expect(badge(other)).to_be_hidden()
    other.goto(f"{live_server}/victims/alerts?status=all")
    expect(other.get_by_test_id("no-alerts")).to_be_visible()
    expect(other.locator("#alert-list tbody tr")).to_have_count(0)
    resp = other.goto(f"{live_server}/victims/alerts/{raised.id}")
    assert resp.status == 404
    text = other.content()
    assert NAME not in text and pseudonym not in text and raised.number not in text


def test_a_specialist_one_link_away_sees_the_pseudonym_only(app, live_server, page):
    """Illinois State Police work a phone in their own case. Springfield PD record that
    their survivor uses that phone: the State Police are told (the survivor is one link
    from their case), by pseudonym only, with Springfield's lead to call and nothing
    else of Springfield's case (victims/policy.py: reveals_name needs the survivor in
    the alert's case)."""
    ensure_graph_registered(app)
    spd, isp = make_agency(name="Springfield PD"), make_agency(name="Illinois State Police")
    spd_lead, isp_lead = account(spd), account(isp)
    isp_specialist = account(isp, roles=("victim_specialist",))
    a, b = actor_for(spd_lead.user), actor_for(isp_lead.user)
    case_a = make_case(a, title="Operation Nightjar")
    case_b = make_case(b, title="Operation Kestrel")
    phone = graph.add_entity(actor=b, case_id=case_b, kind="phone",
                             identifiers=[("phone", "(217) 555-0142")])
    maria = graph.add_entity(actor=a, case_id=case_a, kind="person", label=NAME,
                             props={"names": [NAME], "dob": adult_dob()}, case_role="victim")
    pseudonym = maria.pseudonym
    number_a = db.session.get(Case, case_a).number

    sign_in(page, live_server, isp_specialist)
    expect(badge(page)).to_have_attribute("data-count", "0")
    expect(badge(page)).to_be_hidden()
    page.evaluate("window.__sameDocument = true")

    # Springfield: she uses the phone the State Police have in their case
    graph.add_entity(actor=a, case_id=case_a, kind="phone",
                     identifiers=[("phone", "217-555-0142")])
    graph.add_link(actor=a, case_id=case_a, source_id=maria.id, target_id=phone.id,
                   type="USES")
    db.session.expire_all()
    (told,) = db.session.scalars(select(SurvivorAlert).where(
        SurvivorAlert.agency_id == isp.id)).all()
    assert told.case_id == case_b and told.reason == "one_link"

    expect(badge(page)).to_have_text("1", timeout=15_000)
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    page.goto(f"{live_server}/victims/alerts/{told.id}")
    subject = page.get_by_test_id("subject")
    expect(subject).to_have_text(pseudonym)
    expect(subject).to_have_class(re.compile(r"\bpseudonym\b"))
    expect(page.get_by_test_id("why")).to_contain_text("USES")
    expect(page.get_by_test_id("poc-name")).to_have_text(spd_lead.user.full_name)
    text = page.locator("main").inner_text()
    for secret in ("Maria", "Lopez", number_a, "Nightjar"):
        assert secret not in text, f"{secret!r} shown to the State Police specialist"
    # the alert is theirs to work
    page.get_by_test_id("acknowledge").click()
    expect(page.get_by_test_id("alert-status")).to_have_text("Acknowledged")
    expect(subject).to_have_text(pseudonym)
