"""In real Chromium: an item's stored bytes are changed behind the app's back (in the
evidence folder, as someone with disk access could), the integrity sweep runs, and
the case lead signed in finds the alert through the navigation, the item marked
HASH MISMATCH, and the failed check in its chain; the lead agency's supervisor is
told too; an investigator of another agency sees no alert and not the item."""
from __future__ import annotations

import io
import re

import pytest
from playwright.sync_api import expect

from taskforce.evidence import service, tasks
from taskforce.evidence.storage import get_store
from tests.e2e.conftest import account, sign_in
from tests.factories import make_agency
from tests.factories_graph import closed_bolt_uri, ensure_graph_registered
from tests.factories_investigations import actor_for, make_case

pytestmark = pytest.mark.e2e


@pytest.fixture()
def app_environ(app_environ):
    return {**app_environ, "NEO4J_URI": closed_bolt_uri(), "NEO4J_PASSWORD": "unused"}


@pytest.fixture()
def second_page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def test_a_corrupted_item_alerts_the_case_lead_and_no_one_outside(app, live_server, page,
                                                                  second_page):
    from taskforce import evidence

    ensure_graph_registered(app)
    if "evidence" not in app.blueprints:
        evidence.init_app(app)
    agency = make_agency()
    lead = account(agency)
    supervisor = account(agency, roles=("supervisor",))
    outsider = account(make_agency())
    case_id = make_case(actor_for(lead.user), title="Operation Heron")
    original = b"Call detail records, carrier return of 3 March\n" * 200
    item = service.ingest(actor=actor_for(lead.user), case_id=case_id,
                          stream=io.BytesIO(original), description="Carrier CDR return",
                          filename="cdr.csv")
    intact = service.ingest(actor=actor_for(lead.user), case_id=case_id,
                            stream=io.BytesIO(b"an untouched file"), description="Photo",
                            filename="photo.jpg")
    number, recorded = item.number, item.sha256

    # one byte changed in the stored object, outside the app (same size: only the hash tells)
    path = get_store().root / item.storage_key
    path.chmod(0o644)
    changed = bytearray(path.read_bytes())
    changed[10] ^= 0x20
    path.write_bytes(bytes(changed))
    result = tasks.sweep()
    assert result["checked"] == 2 and result["ok"] == 1, result
    assert result["alerts"] == 2, result  # the case lead and the lead agency's supervisor

    sign_in(page, live_server, lead)
    page.get_by_role("link", name="Integrity alerts").click()
    expect(page).to_have_url(re.compile(r"/evidence/alerts$"))
    alerts = page.get_by_test_id("integrity-alert")
    expect(alerts).to_have_count(1)
    expect(alerts).to_contain_text(number)
    expect(alerts.get_by_test_id("alert-new")).to_have_text("new")
    expect(alerts).to_contain_text(f"sha256 recorded {recorded}")
    expect(alerts).to_contain_text(f"Recorded {recorded}")
    expect(alerts).not_to_contain_text(intact.number)
    expect(page.get_by_test_id("no-alerts")).to_have_count(0)

    # the alert leads to the item: marked, and the failed check is in its chain
    alerts.get_by_role("link", name=number).click()
    expect(page).to_have_url(re.compile(rf"/evidence/{item.id}$"))
    expect(page.get_by_test_id("integrity")).to_contain_text("HASH MISMATCH")
    custody = page.get_by_test_id("custody")
    expect(custody).to_contain_text("Integrity sweep: INTEGRITY FAILURE")

    # seen once: the alert stays on the page, no longer new
    page.goto(f"{live_server}/evidence/alerts")
    expect(alerts).to_have_count(1)
    expect(alerts.locator("h2")).to_have_text(number)
    expect(alerts.get_by_test_id("alert-new")).to_have_count(0)

    # the lead agency's supervisor has one of their own
    sign_in(second_page, live_server, supervisor)
    second_page.goto(f"{live_server}/evidence/alerts")
    expect(second_page.get_by_test_id("integrity-alert")).to_contain_text(number)
    second_page.context.clear_cookies()

    # an investigator of another agency: no alert, and the item is not theirs to see
    sign_in(second_page, live_server, outsider)
    second_page.get_by_role("link", name="Integrity alerts").click()
    expect(second_page.get_by_test_id("no-alerts")).to_have_text("No integrity alerts.")
    expect(second_page.get_by_test_id("integrity-alert")).to_have_count(0)
    expect(second_page.locator("main")).not_to_contain_text(number)
    assert second_page.goto(f"{live_server}/evidence/{item.id}").status == 404
