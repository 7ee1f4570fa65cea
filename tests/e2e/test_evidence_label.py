"""In real Chromium: record a physical item on the case's evidence page, see its QR code
on the item page (and read it back from a screenshot), open its printable label (a PDF
served to the signed-in browser), and move the item to another storage location."""
from __future__ import annotations

import io
import re

import pytest
from playwright.sync_api import expect
from pypdf import PdfReader

from tests.factories import fresh_code, make_agency, make_user
from tests.factories_graph import closed_bolt_uri, ensure_graph_registered
from tests.factories_investigations import actor_for, make_case

pytestmark = pytest.mark.e2e


@pytest.fixture()
def app_environ(app_environ):
    return {**app_environ, "NEO4J_URI": closed_bolt_uri(), "NEO4J_PASSWORD": "unused"}


def test_record_a_physical_item_see_its_qr_code_and_print_its_label(app, live_server, page):
    from taskforce import evidence
    from taskforce.evidence import service

    ensure_graph_registered(app)
    if "evidence" not in app.blueprints:
        evidence.init_app(app)
    user, password, secret = make_user(agency=make_agency(), roles=["investigator"])
    case_id = make_case(actor_for(user), title="Operation Wren")
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)

    page.goto(f"{live_server}/login")
    page.fill("#username", user.username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/login/mfa"))
    page.fill("#code", fresh_code(user.username, secret))
    page.click("button[type=submit]")
    expect(page.get_by_test_id("whoami")).to_have_text(user.username)

    page.goto(f"{live_server}/cases/{case_id}/evidence")
    page.fill("#ph-description", "Black backpack with two prepaid phones")
    page.fill("#ph-location", "HQ property room, locker 7")
    page.fill("#ph-collected-place", "Greyhound station")
    page.click("#physical button[type=submit]")
    expect(page).to_have_url(re.compile(r"/evidence/\d+$"))
    item_id = int(page.url.rsplit("/", 1)[1])
    number = page.get_by_test_id("item-number").inner_text()

    # the QR code is drawn on the page
    qr = page.locator("[data-testid=item-qr] svg")
    expect(qr).to_be_visible()
    box = qr.bounding_box()
    assert box["width"] >= 60 and box["height"] >= 60
    from PIL import Image

    shot = Image.open(io.BytesIO(page.locator("[data-testid=item-qr]").screenshot()))
    with app.app_context():
        url = service.item_url(item_id)
    assert url.endswith(f"/evidence/{item_id}")

    # the label is a PDF served to this signed-in browser
    href = page.get_by_test_id("print-label").get_attribute("href")
    assert href == f"/evidence/{item_id}/label.pdf"
    resp = page.request.get(f"{live_server}{href}")
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/pdf"
    text = " ".join(PdfReader(io.BytesIO(resp.body())).pages[0].extract_text().split())
    assert number in text and "HQ property room, locker 7" in text

    # move it: the new location shows, and the move is in the chain of custody
    page.fill("#mv-location", "Annex B, shelf 3")
    page.fill("#mv-reason", "Locker 7 needed for a new case")
    page.click("[data-testid=move-form] button[type=submit]")
    expect(page).to_have_url(re.compile(rf"/evidence/{item_id}#label$"))
    expect(page.get_by_test_id("item-facts")).to_contain_text("Annex B, shelf 3")
    custody = page.get_by_test_id("custody")
    expect(custody).to_contain_text("Locker 7 needed for a new case")
    expect(custody.locator("tbody tr")).to_have_count(3)
    # the QR code on the page, as the browser drew it, reads back as the item's address
    # (zxing-cpp, a test dependency)
    import zxingcpp
    assert [b.text for b in zxingcpp.read_barcodes(shot)] == [url]
    # the browser asks for /favicon.ico, which the app does not serve; nothing else failed
    assert all(url.endswith("/favicon.ico") for url in missing), missing
    assert not [p for p in problems if "404" not in p], problems
