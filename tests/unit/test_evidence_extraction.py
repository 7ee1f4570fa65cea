"""PDF text extraction: a bounded child process, the item's text searchable within its
case, and identifiers found in it offered as suggestions a person accepts or dismisses.

The hostile corpus is made here: an encrypted PDF, garbage after a PDF header, a
truncated file, a broken cross-reference table, nesting 200,000 deep, and a
decompression bomb (a 3 MB file that inflates to 2 GiB). None may crash or hang the
worker: each item ends "text not extracted" with the reason (or, for a damaged file
pypdf can repair, with its text).
"""
from __future__ import annotations

import io
import json
import time
import zlib

import pytest
from fpdf import FPDF
from sqlalchemy import select

from taskforce.audit.models import AuditEvent
from taskforce.errors import Conflict, Invalid, NotFound
from taskforce.evidence import extraction, service
from taskforce.evidence.models import EntitySuggestion, EvidencePage, EvidenceText
from taskforce.extensions import db
from taskforce.graph.models import Entity
from tests.factories_investigations import api_caller, make_case, person

ETH = "0x52908400098527886E0F7030069857D2E4169EE7"  # the EIP-55 example (valid checksum)


# --- the corpus ---------------------------------------------------------------------------

def good_pdf() -> bytes:
    pdf = FPDF()
    pdf.set_title("Subpoena return")
    pdf.set_author("Carrier records")
    pdf.set_font("helvetica", size=11)
    pdf.add_page()
    pdf.multi_cell(0, 6, "Subscriber called (312) 555-0199 and wrote to jane.doe@example.com.\n"
                         "Ad ID: AB12345 at https://listcity.example.com/ad/12345")
    pdf.add_page()
    pdf.multi_cell(0, 6, f"Paid to {ETH} on page two. Nightjar motel.")
    return bytes(pdf.output())


def encrypted_pdf() -> bytes:
    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="secret")
    pdf.add_page()
    pdf.set_font("helvetica")
    pdf.cell(0, 10, "hidden text")
    return bytes(pdf.output())


def build_pdf(objects: list[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def bomb_pdf(mib: int = 2048) -> bytes:
    """A page whose content stream inflates to `mib` MiB: one compressed MiB repeated
    (a full flush resets the window, so each repeat is the same bytes)."""
    c = zlib.compressobj(9)
    mib_of_text = b"(A) Tj " * (1024 * 1024 // 7)
    data = c.compress(mib_of_text) + c.flush(zlib.Z_FULL_FLUSH)
    data += (c.compress(mib_of_text) + c.flush(zlib.Z_FULL_FLUSH)) * (mib - 1)
    return build_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
         b"/Resources << /Font << /F1 5 0 R >> >> >>"),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"])


def deep_pdf(depth: int = 200_000) -> bytes:
    return build_pdf([b"<< /Type /Catalog /Pages 2 0 R /X " + b"[" * depth + b"]" * depth + b" >>",
                      b"<< /Type /Pages /Kids [] /Count 0 >>"])


def broken_xref_pdf() -> bytes:
    data = good_pdf()
    at = data.rindex(b"startxref")
    return data[:at] + b"startxref\n999999999\n%%EOF\n"  # points nowhere


HOSTILE = {
    "encrypted": (encrypted_pdf, "encrypted"),
    "garbage": (lambda: b"%PDF-1.4\n" + b"\x00garbage" * 100, "malformed"),
    "truncated": (lambda: good_pdf()[:400], "malformed"),
    "deep": (deep_pdf, "malformed"),
    "bomb": (bomb_pdf, "decompression"),
}


# --- the bounded child ----------------------------------------------------------------------

def _write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_child_extracts_pages_count_and_metadata(tmp_path):
    got = extraction.extract_pdf(_write(tmp_path, "good.pdf", good_pdf()))
    assert got.ok and got.page_count == 2
    assert got.metadata["Title"] == "Subpoena return" and got.metadata["Author"] == "Carrier records"
    assert "(312) 555-0199" in got.pages[0] and "Nightjar" in got.pages[1]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_pdfs_end_with_a_reason_in_bounded_time(tmp_path, name):
    make, reason = HOSTILE[name]
    t0 = time.monotonic()
    got = extraction.extract_pdf(_write(tmp_path, f"{name}.pdf", make()), time_limit=30)
    assert time.monotonic() - t0 < 30
    assert not got.ok and reason in got.reason, got.reason


def test_broken_xref_is_repaired_or_refused_never_a_crash(tmp_path):
    got = extraction.extract_pdf(_write(tmp_path, "xref.pdf", broken_xref_pdf()))
    assert (got.ok and "Nightjar" in got.pages[1]) or "malformed" in got.reason


def test_time_bound_kills_the_child(tmp_path):
    t0 = time.monotonic()
    got = extraction.extract_pdf(_write(tmp_path, "good.pdf", good_pdf()), time_limit=0.05)
    assert time.monotonic() - t0 < 5
    assert not got.ok and got.reason.startswith("time limit")


def test_memory_bound_applies_to_the_child(tmp_path):
    got = extraction.extract_pdf(_write(tmp_path, "good.pdf", good_pdf()),
                                 memory_limit=40 * 1024 * 1024)
    assert not got.ok
    assert "memory" in got.reason or "parser stopped" in got.reason, got.reason


def test_identifiers_found_and_normalized():
    found = {(f.kind, f.value): f for f in extraction.find_identifiers(
        ["Call (312) 555-0199 or 312.555.0199; mail Jane.Doe@Example.com.",
         (f"see https://listcity.example.com/ad/12345, Ad ID: AB12345, wallet {ETH}; "
          "and 555-01 is no phone")])}
    assert set(found) == {("phone", "+13125550199"), ("email", "jane.doe@example.com"),
                          ("url", "https://listcity.example.com/ad/12345"), ("ad", "AB12345"),
                          ("crypto_wallet", f"eth:{ETH.lower()}")}
    assert found[("phone", "+13125550199")].page_no == 1  # the first page it is on
    assert found[("crypto_wallet", f"eth:{ETH.lower()}")].page_no == 2


# --- through ingest, the task, search and the suggestions -------------------------------------

@pytest.fixture()
def ev_app(app):
    from taskforce import evidence, graph

    if "evidence" not in app.blueprints:
        evidence.init_app(app)
    if "graph" not in app.blueprints:
        graph.init_app(app)
    return app


@pytest.fixture()
def lead(ev_app):
    return person()


@pytest.fixture()
def case_id(lead):
    return make_case(lead[1])


def _ingest(actor, case_id, data: bytes, name="return.pdf"):
    return service.ingest(actor=actor, case_id=case_id, stream=io.BytesIO(data),
                          description="Subpoena return", filename=name)


def test_pdf_ingest_extracts_text_and_suggests_entities(ev_app, lead, case_id):
    item = _ingest(lead[1], case_id, good_pdf())
    assert item.content_type == "application/pdf"
    text = db.session.get(EvidenceText, item.id)
    assert text.status == "extracted" and text.page_count == 2
    assert json.loads(text.doc_metadata)["Title"] == "Subpoena return"
    pages = list(db.session.scalars(select(EvidencePage).where(EvidencePage.item_id == item.id)
                                    .order_by(EvidencePage.page_no)))
    assert [p.page_no for p in pages] == [1, 2] and "Nightjar" in pages[1].text
    kinds = {s.kind: s for s in db.session.scalars(select(EntitySuggestion)
                                                   .where(EntitySuggestion.item_id == item.id))}
    assert set(kinds) == {"phone", "email", "url", "ad", "crypto_wallet"}
    assert all(s.status == "open" and s.entity_id is None for s in kinds.values())
    # nothing was added to the graph by itself
    assert db.session.scalar(select(Entity).limit(1)) is None

    hits = service.search_text(actor=lead[1], case_id=case_id, query="nightjar MOTEL")
    assert [(h.item.id, h.page_no) for h in hits] == [(item.id, 2)]
    assert "Nightjar" in hits[0].snippet
    assert service.search_text(actor=lead[1], case_id=case_id, query="nightjar absent") == []
    with pytest.raises(Invalid):
        service.search_text(actor=lead[1], case_id=case_id, query="   ")


def test_search_and_suggestions_need_the_case(ev_app, lead, case_id):
    item = _ingest(lead[1], case_id, good_pdf())
    _, stranger = person()
    with pytest.raises(NotFound):
        service.search_text(actor=stranger, case_id=case_id, query="Nightjar")
    with pytest.raises(NotFound):
        service.item_text(actor=stranger, item_id=item.id)
    suggestion = db.session.scalar(select(EntitySuggestion).where(
        EntitySuggestion.item_id == item.id, EntitySuggestion.kind == "phone"))
    with pytest.raises(NotFound):
        service.decide_suggestion(actor=stranger, suggestion_id=suggestion.id, accept=True)
    db.session.rollback()
    assert db.session.get(EntitySuggestion, suggestion.id).status == "open"


def test_accept_adds_the_entity_dismiss_does_not(ev_app, lead, case_id):
    item = _ingest(lead[1], case_id, good_pdf())
    by_kind = {s.kind: s.id for s in db.session.scalars(
        select(EntitySuggestion).where(EntitySuggestion.item_id == item.id))}
    accepted = service.decide_suggestion(actor=lead[1], suggestion_id=by_kind["phone"],
                                         accept=True)
    assert accepted.status == "accepted" and accepted.entity_id is not None
    entity = db.session.get(Entity, accepted.entity_id)
    assert entity.kind == "phone"
    assert [i.value for i in entity.identifiers] == ["+13125550199"]
    provenance = db.session.scalar(select(AuditEvent).where(
        AuditEvent.action == "evidence.accept_suggestion"))
    assert f"evidence {item.number} p.1" in json.dumps(provenance.details, default=str)
    dismissed = service.decide_suggestion(actor=lead[1], suggestion_id=by_kind["email"],
                                          accept=False)
    assert dismissed.status == "dismissed" and dismissed.entity_id is None
    assert db.session.scalar(select(Entity).where(Entity.kind == "email")) is None
    with pytest.raises(Conflict):
        service.decide_suggestion(actor=lead[1], suggestion_id=by_kind["phone"], accept=True)
    with pytest.raises(Invalid):  # an ad id needs the site it is on
        service.decide_suggestion(actor=lead[1], suggestion_id=by_kind["ad"], accept=True)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_pdf_item_is_kept_with_text_not_extracted(ev_app, lead, case_id, name):
    make, reason = HOSTILE[name]
    data = make()
    item = _ingest(lead[1], case_id, data, name=f"{name}.pdf")
    assert item.size == len(data)  # the evidence is stored whatever its text does
    text = db.session.get(EvidenceText, item.id)
    assert text.status == "not_extracted" and reason in text.reason
    assert not list(db.session.scalars(select(EvidencePage).where(EvidencePage.item_id == item.id)))


def test_api_search_text_and_decide(ev_app, lead, case_id):
    item = _ingest(lead[1], case_id, good_pdf())
    caller = api_caller(ev_app, lead[0])
    got = caller.get(f"/api/v1/cases/{case_id}/evidence/search?q=Nightjar")
    assert got.status_code == 200, got.get_json()
    assert got.get_json()["hits"][0]["number"] == item.number
    assert caller.get(f"/api/v1/cases/{case_id}/evidence/search").status_code in (400, 422)
    text = caller.get(f"/api/v1/evidence/{item.id}/text").get_json()
    assert text["status"] == "extracted" and text["page_count"] == 2
    url = next(s for s in text["suggestions"] if s["kind"] == "url")
    done = caller.post(f"/api/v1/evidence/suggestions/{url['id']}/dismiss")
    assert done.status_code == 200 and done.get_json()["status"] == "dismissed"
    again = caller.post(f"/api/v1/evidence/suggestions/{url['id']}/accept")
    assert again.status_code == 409
    _, stranger_actor = person()
    stranger = api_caller(ev_app, db.session.get(type(lead[0]), stranger_actor.user_id))
    assert stranger.get(f"/api/v1/evidence/{item.id}/text").status_code == 404


def test_text_page_and_search_page(ev_app, lead, case_id):
    from tests.factories_investigations import browser

    page_user_browser, page_user = browser(ev_app)
    from taskforce.investigations import service as cases

    cases.add_member(actor=lead[1], case_id=case_id, case_role="investigator",
                     user_id=page_user.id)
    item = _ingest(lead[1], case_id, good_pdf())
    page = page_user_browser.get(f"/evidence/{item.id}/text")
    assert page.status_code == 200
    html = page.data.decode()
    assert "2 pages" in html and "Nightjar" in html and 'data-testid="suggestion"' in html
    phone = db.session.scalar(select(EntitySuggestion).where(
        EntitySuggestion.item_id == item.id, EntitySuggestion.kind == "phone"))
    done = page_user_browser.post(f"/evidence/suggestions/{phone.id}/dismiss",
                                  data={"item_id": str(item.id)})
    assert done.status_code == 302
    db.session.rollback()
    assert db.session.get(EntitySuggestion, phone.id).status == "dismissed"
    found = page_user_browser.get(f"/cases/{case_id}/evidence/search?q=Nightjar")
    assert found.status_code == 200 and item.number in found.data.decode()
    ad = db.session.scalar(select(EntitySuggestion).where(
        EntitySuggestion.item_id == item.id, EntitySuggestion.kind == "ad"))
    refused = page_user_browser.post(f"/evidence/suggestions/{ad.id}/accept",
                                     data={"item_id": str(item.id)})
    assert refused.status_code == 422 and "Name the site" in refused.data.decode()
    outsider_browser, _ = browser(ev_app)
    assert outsider_browser.get(f"/evidence/{item.id}/text").status_code == 404


def test_cli_extract_text_runs_again(ev_app, lead, case_id):
    good = _ingest(lead[1], case_id, good_pdf()).id
    bad = _ingest(lead[1], case_id, encrypted_pdf(), name="locked.pdf").id
    result = ev_app.test_cli_runner().invoke(args=["evidence", "extract-text", "--all"])
    assert result.exit_code == 0, result.output
    assert "2 item(s), text not extracted from 1" in result.output
    assert f"item {bad}: text not extracted: encrypted" in result.output
    db.session.rollback()
    assert db.session.get(EvidenceText, good).status == "extracted"
    # suggestions are not duplicated by a second run
    assert len(list(db.session.scalars(select(EntitySuggestion).where(
        EntitySuggestion.item_id == good)))) == 5
