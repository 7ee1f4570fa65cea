"""In real Chromium: a PDF uploaded on the case's evidence page has its text extracted
(Celery runs the job in the web process in tests), the item's text page shows the
pages and the identifiers found in them, a suggestion accepted becomes an entity of
the case and one dismissed does not; the case's text search finds a word with its
item and page and says so when nothing matches; a hostile (encrypted) PDF shows
"text not extracted" and why."""
from __future__ import annotations

import re

import pytest
from fpdf import FPDF
from playwright.sync_api import expect
from sqlalchemy import select

from taskforce.evidence.models import EntitySuggestion, EvidenceText
from taskforce.extensions import db
from tests.e2e.conftest import account, sign_in
from tests.factories import make_agency
from tests.factories_graph import closed_bolt_uri, ensure_graph_registered
from tests.factories_investigations import actor_for, make_case

pytestmark = pytest.mark.e2e

PHONE = "(312) 555-0147"
EMAIL = "heron.bookings@example.org"


@pytest.fixture()
def app_environ(app_environ):
    return {**app_environ, "NEO4J_URI": closed_bolt_uri(), "NEO4J_PASSWORD": "unused"}


@pytest.fixture()
def lead(app):
    from taskforce import evidence

    ensure_graph_registered(app)
    if "evidence" not in app.blueprints:
        evidence.init_app(app)
    who = account(make_agency())
    case_id = make_case(actor_for(who.user), title="Operation Heron")
    return who, case_id


def motel_records_pdf() -> bytes:
    """Two pages, as a subpoena return might come: a phone number on the first, an email
    address on the second."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    pdf.add_page()
    pdf.multi_cell(0, 6, f"Kestrel Motel front desk log. Room 12 booked by a caller on "
                         f"{PHONE} for three nights.")
    pdf.add_page()
    pdf.multi_cell(0, 6, f"Receipts were sent to {EMAIL} after checkout.")
    return bytes(pdf.output())


def locked_pdf() -> bytes:
    pdf = FPDF()
    pdf.set_encryption(owner_password="owner-pass", user_password="user-pass")
    pdf.set_font("helvetica", size=11)
    pdf.add_page()
    pdf.cell(0, 10, "Ledger kept under a password")
    return bytes(pdf.output())


def upload(page, base: str, case_id: int, path, description: str) -> int:
    """Upload on the case's evidence page (its script streams the file to the API);
    ends on the new item's page."""
    page.goto(f"{base}/cases/{case_id}/evidence")
    page.set_input_files("#ev-file", str(path))
    page.fill("#ev-description", description)
    page.click("#evidence-upload button[type=submit]")
    expect(page).to_have_url(re.compile(r"/evidence/\d+$"), timeout=60_000)
    return int(page.url.rsplit("/", 1)[1])


def test_text_suggestions_accepted_and_dismissed_and_search(app, live_server, page, lead,
                                                            tmp_path):
    who, case_id = lead
    sign_in(page, live_server, who)
    path = tmp_path / "motel-records.pdf"
    path.write_bytes(motel_records_pdf())
    item_id = upload(page, live_server, case_id, path, "Kestrel Motel subpoena return")
    number = page.get_by_test_id("item-number").inner_text()
    db.session.rollback()
    assert db.session.get(EvidenceText, item_id).status == "extracted"

    page.get_by_role("link", name="Extracted text and suggested entities").click()
    expect(page).to_have_url(re.compile(rf"/evidence/{item_id}/text$"))
    expect(page.get_by_test_id("text-status")).to_contain_text("2 pages, extracted")
    pages = page.get_by_test_id("page")
    expect(pages).to_have_count(2)
    expect(pages.nth(0)).to_contain_text("Page 1")
    expect(pages.nth(0)).to_contain_text("Room 12 booked by a caller")
    expect(pages.nth(1)).to_contain_text(EMAIL)

    phone_row = page.locator("[data-testid=suggestion][data-kind=phone]")
    email_row = page.locator("[data-testid=suggestion][data-kind=email]")
    expect(phone_row).to_have_count(1)
    expect(phone_row).to_contain_text("Phone")
    expect(phone_row.locator("td").nth(2)).to_have_text("1")  # the page it was found on
    expect(email_row).to_contain_text(EMAIL)
    expect(email_row.locator("td").nth(2)).to_have_text("2")
    phone_value = phone_row.locator("td.mono").inner_text()
    assert re.sub(r"\D", "", phone_value).endswith("3125550147"), phone_value

    phone_row.get_by_role("button", name="Accept").click()
    expect(page).to_have_url(re.compile(rf"/evidence/{item_id}/text#suggestions$"))
    expect(phone_row).to_contain_text("Added to the case")
    email_row.get_by_role("button", name="Dismiss").click()
    expect(email_row).to_contain_text("Dismissed")
    expect(page.locator("[data-testid=suggestion] button")).to_have_count(0)

    db.session.rollback()
    decided = {s.kind: s for s in db.session.scalars(
        select(EntitySuggestion).where(EntitySuggestion.item_id == item_id))}
    assert decided["phone"].status == "accepted" and decided["phone"].entity_id
    assert decided["email"].status == "dismissed" and decided["email"].entity_id is None

    # the phone is now an entity of the case, noting where it came from; the email is not
    page.goto(f"{live_server}/cases/{case_id}/network")
    entities = page.get_by_test_id("entities")
    row = entities.locator(f"tr[data-entity-id='{decided['phone'].entity_id}']")
    expect(row).to_contain_text("Phone")
    expect(row).to_contain_text(f"Found in evidence item {number}, page 1")
    expect(entities).not_to_contain_text(EMAIL)

    # search the case's text: the hit names the item and the page, and links to it
    page.goto(f"{live_server}/evidence/{item_id}/text")
    page.locator("input[name=q]").fill("receipts checkout")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/cases/{case_id}/evidence/search\?q="))
    expect(page.get_by_test_id("hit-count")).to_have_text("1 page found.")
    hit = page.get_by_test_id("hit")
    expect(hit).to_have_count(1)
    expect(hit).to_contain_text(f"{number} page 2")
    expect(hit).to_contain_text("Receipts were sent to")
    hit.get_by_role("link", name=number).click()
    expect(page).to_have_url(re.compile(rf"/evidence/{item_id}/text#page-2$"))

    page.goto(f"{live_server}/cases/{case_id}/evidence/search")
    page.locator("input[name=q]").fill("nightingale")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_test_id("no-hits")).to_contain_text(
        "No page of this case's evidence holds every word of \u201cnightingale\u201d")
    expect(page.get_by_test_id("hit")).to_have_count(0)


def test_an_encrypted_pdf_shows_text_not_extracted_and_why(app, live_server, page, lead,
                                                           tmp_path):
    who, case_id = lead
    sign_in(page, live_server, who)
    path = tmp_path / "locked-ledger.pdf"
    path.write_bytes(locked_pdf())
    item_id = upload(page, live_server, case_id, path, "Ledger PDF, password protected")
    expect(page.get_by_test_id("sha256")).to_have_count(1)  # stored and hashed all the same
    page.get_by_role("link", name="Extracted text and suggested entities").click()
    status = page.get_by_test_id("text-status")
    expect(status).to_contain_text("Text not extracted:")
    expect(status).to_contain_text("encrypted")
    expect(page.get_by_test_id("page")).to_have_count(0)
    expect(page.get_by_test_id("suggestions")).to_have_count(0)
    db.session.rollback()
    text = db.session.get(EvidenceText, item_id)
    assert text.status == "not_extracted" and "encrypted" in text.reason
