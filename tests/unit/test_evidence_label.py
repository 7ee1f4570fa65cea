"""Storage locations of physical items (each move a custody event) and printable labels:
a 4 x 2 in PDF with a QR code of the item's page, never a survivor's name; the page
behind the QR code needs sign-in and access to the case."""
from __future__ import annotations

import io
import json

import pytest
import segno
from pypdf import PdfReader
from sqlalchemy import func, select

from taskforce.audit.models import AuditEvent
from taskforce.errors import Conflict, Forbidden, Invalid, NotFound
from taskforce.evidence import ledger, service
from taskforce.evidence.models import CustodyEvent, EvidenceItem
from taskforce.extensions import db
from taskforce.investigations import service as cases
from tests.factories_graph import add_person, closed_bolt_uri, ensure_graph_registered, make_team
from tests.factories_investigations import api_caller, browser


@pytest.fixture()
def app_environ(app_environ):
    return {**app_environ, "NEO4J_URI": closed_bolt_uri(), "NEO4J_PASSWORD": "unused"}


@pytest.fixture()
def team(app):
    from taskforce import evidence

    ensure_graph_registered(app)
    if "evidence" not in app.blueprints:
        evidence.init_app(app)
    return make_team()


def physical(actor, case_id, description="Blue Samsung phone, cracked case",
             location="HQ property room, locker 14"):
    return service.add_physical_item(actor=actor, case_id=case_id, description=description,
                                     storage_location=location, collected_by="Det. Lopez",
                                     collected_place="Motel 6, room 12")


def events(item_id) -> list[CustodyEvent]:
    return list(db.session.scalars(select(CustodyEvent).where(
        CustodyEvent.item_id == item_id).order_by(CustodyEvent.seq)))


def audits(action: str, outcome: str = "success") -> int:
    return db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == action, AuditEvent.outcome == outcome))


def pdf_text(data: bytes) -> str:
    return " ".join(" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(data)).pages)


def qr_image(data: bytes):
    """The QR code drawn on the label (the PNG embedded in the PDF), as a PIL image."""
    images = PdfReader(io.BytesIO(data)).pages[0].images
    assert len(images) == 1
    return images[0].image


def modules_of(image, expected: segno.QRCode) -> list[list[int]]:
    """Read the image back module by module (dark = 1), assuming the symbol's size and
    a 4-module quiet zone: the same grid segno would draw for `expected`."""
    gray = image.convert("L")
    size = expected.symbol_size(border=0)[0]
    scale = gray.width / (size + 8)
    assert scale == int(scale) and gray.width == gray.height, "whole pixels per module"
    scale = int(scale)
    centre = 4 * scale + scale // 2
    return [[1 if gray.getpixel((centre + c * scale, centre + r * scale)) < 128 else 0
             for c in range(size)] for r in range(size)]


# --- labels -------------------------------------------------------------------------------

def test_the_label_has_the_items_facts_and_a_qr_code_of_its_page(team):
    investigator = team.investigator[1]
    item = physical(investigator, team.case_id)
    before = len(events(item.id))
    label = service.item_label(actor=investigator, item_id=item.id)

    reader = PdfReader(io.BytesIO(label.data))
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert (float(box.width), float(box.height)) == (288.0, 144.0)  # 4 x 2 in, landscape
    text = pdf_text(label.data)
    assert item.number in text and item.number.rsplit("-E", 1)[0] in text  # case number
    assert "Blue Samsung phone" in text and "Det. Lopez" in text
    assert "HQ property room, locker 14" in text
    assert item.collected_at.strftime("%Y-%m-%d %H:%M") in text
    assert label.filename == f"label-{item.number}.pdf"

    url = service.item_url(item.id)
    assert url == f"http://localhost:5000/evidence/{item.id}"
    expected = segno.make(url, error="m", micro=False, boost_error=False)
    image = qr_image(label.data)
    assert modules_of(image, expected) == [list(row) for row in expected.matrix]

    # printing is audited, but the item did not move: no custody event
    assert audits("evidence.label") == 1
    assert len(events(item.id)) == before

    # and a real decoder reads it (zxing-cpp, a test dependency)
    import zxingcpp
    assert [b.text for b in zxingcpp.read_barcodes(image)] == [url]


def test_a_digital_items_label_shows_a_sha256_prefix(team):
    lead = team.lead[1]
    item = service.ingest(actor=lead, case_id=team.case_id, stream=io.BytesIO(b"phone dump"),
                          description="Extraction of handset 2", filename="h2.bin")
    text = pdf_text(service.item_label(actor=lead, item_id=item.id).data)
    assert f"SHA-256 {item.sha256[:16]}..." in text
    assert item.sha256 not in text and "Kept at" not in text


def test_long_texts_are_cut_to_fit_one_label(team):
    lead = team.lead[1]
    item = physical(lead, team.case_id, description="Seized ledger pages " * 150,
                    location="BAG" + "7" * 290)
    label = service.item_label(actor=lead, item_id=item.id)
    reader = PdfReader(io.BytesIO(label.data))
    assert len(reader.pages) == 1
    text = pdf_text(label.data)
    assert item.number in text and "Seized ledger pages" in text and "..." in text
    assert text.count("Seized ledger pages") < 10  # cut, not all 150 times
    assert "BAG777" in text and "7" * 290 not in text


def test_the_label_never_carries_a_survivors_name_whoever_prints_it(team):
    lead, investigator = team.lead[1], team.investigator[1]
    add_person(lead, team.case_id, "Rosalind Featherstone", role="victim")
    item = physical(investigator, team.case_id,
                    description="Jacket and shoes Rosalind Featherstone wore",
                    location="Locker 3 (Featherstone bag)")
    # the case lead may see the name on the item page, but not on a label
    assert "Featherstone" in service.get_item(actor=lead, item_id=item.id).item.description
    for actor in (lead, team.specialist[1], investigator):
        text = pdf_text(service.item_label(actor=actor, item_id=item.id).data)
        assert "Featherstone" not in text and "Rosalind" not in text
        assert "Survivor-" in text and item.number in text

    # an item marked as identifying a survivor shows no description at all
    service.flag_survivor_item(actor=investigator, item_id=item.id, reason="Her clothes")
    text = pdf_text(service.item_label(actor=lead, item_id=item.id).data)
    assert "Jacket" not in text and "description withheld" in text and item.number in text
    row = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "evidence.label")
                            .order_by(AuditEvent.id.desc()))
    details = json.loads(row.details) if isinstance(row.details, str) else row.details
    assert details["redacted"] is True and details["number"] == item.number


def test_only_those_who_may_read_the_case_print_its_labels(team):
    item = physical(team.investigator[1], team.case_id)
    with pytest.raises(NotFound):
        service.item_label(actor=team.outsider[1], item_id=item.id)
    with pytest.raises(NotFound):
        service.item_label(actor=team.investigator[1], item_id=999_999)
    assert audits("evidence.label", "denied") == 2
    # a partner agency with read access may print one
    assert service.item_label(actor=team.partner_investigator[1], item_id=item.id).data[:5] \
        == b"%PDF-"


# --- storage location ---------------------------------------------------------------------

def test_moving_an_item_is_a_custody_event_with_who_when_why(team):
    investigator = team.investigator[1]
    item = physical(investigator, team.case_id)
    event = service.move_item(actor=investigator, item_id=item.id,
                              storage_location="Annex B, shelf 4", reason="Locker room flooded")
    assert event.kind == "MOVED" and event.username == team.investigator[0].username
    assert event.reason == "Locker room flooded" and event.place == "Annex B, shelf 4"
    assert json.loads(event.details) == {"from_location": "HQ property room, locker 14",
                                         "to_location": "Annex B, shelf 4"}
    assert event.prev_hash == events(item.id)[-2].hash
    db.session.expire_all()
    assert db.session.get(EvidenceItem, item.id).storage_location == "Annex B, shelf 4"
    assert audits("evidence.move") == 1
    assert ledger.verify_ledger(db.session).ok
    # the label follows the item
    assert "Annex B, shelf 4" in pdf_text(service.item_label(actor=investigator,
                                                             item_id=item.id).data)
    # a sealed item may move too
    service.seal(actor=investigator, item_id=item.id, seal_number="S-1")
    service.move_item(actor=investigator, item_id=item.id, storage_location="Vault",
                      reason="Long-term storage")
    assert [e.kind for e in events(item.id)] == ["COLLECTED", "RECEIVED", "MOVED", "SEALED",
                                                 "MOVED"]


def test_bad_moves_are_refused_and_leave_nothing(team):
    investigator = team.investigator[1]
    item = physical(investigator, team.case_id)
    count = len(events(item.id))
    with pytest.raises(Invalid) as err:
        service.move_item(actor=investigator, item_id=item.id, storage_location="",
                          reason="")
    assert set(err.value.fields) == {"storage_location", "reason"}
    with pytest.raises(Invalid) as err:
        service.move_item(actor=investigator, item_id=item.id,
                          storage_location="HQ property room, locker 14", reason="again")
    assert "already kept there" in err.value.fields["storage_location"][0]
    with pytest.raises(Invalid):
        service.move_item(actor=investigator, item_id=item.id, storage_location="x" * 301,
                          reason="too long")
    # not the custodian, not a manager: refused; an outsider does not see it at all
    with pytest.raises(Forbidden):
        service.move_item(actor=team.partner_investigator[1], item_id=item.id,
                          storage_location="Elsewhere", reason="Because")
    with pytest.raises(NotFound):
        service.move_item(actor=team.outsider[1], item_id=item.id,
                          storage_location="Elsewhere", reason="Because")
    # checked out to a lab: it is not on our shelves to move
    service.check_out(actor=investigator, item_id=item.id, to="State crime lab",
                      reason="Prints")
    with pytest.raises(Conflict):
        service.move_item(actor=investigator, item_id=item.id, storage_location="Annex",
                          reason="Move")
    digital = service.ingest(actor=investigator, case_id=team.case_id,
                             stream=io.BytesIO(b"bytes"), description="File", filename="f")
    with pytest.raises(Conflict):
        service.move_item(actor=investigator, item_id=digital.id, storage_location="Annex",
                          reason="Move")
    db.session.expire_all()
    assert len(events(item.id)) == count + 1  # only the check-out
    assert db.session.get(EvidenceItem, item.id).storage_location == \
        "HQ property room, locker 14"
    assert audits("evidence.move") == 0


def test_the_case_lead_may_move_an_item_someone_else_holds(team):
    item = physical(team.investigator[1], team.case_id)
    event = service.move_item(actor=team.lead[1], item_id=item.id,
                              storage_location="Evidence room 2", reason="Reorganised")
    assert event.user_id == team.lead[0].id
    assert db.session.get(EvidenceItem, item.id).custodian_id == team.investigator[0].id


# --- over HTTP ----------------------------------------------------------------------------

def test_label_and_move_through_the_api(app, team):
    item = physical(team.investigator[1], team.case_id)
    caller = api_caller(app, team.investigator[0])
    resp = caller.get(f"/api/v1/evidence/{item.id}/label")
    assert resp.status_code == 200 and resp.mimetype == "application/pdf"
    assert resp.headers["Content-Disposition"].startswith("inline;")
    assert resp.headers["Cache-Control"] == "no-store"
    assert item.number in pdf_text(resp.data)

    resp = caller.post(f"/api/v1/evidence/{item.id}/storage-location",
                       json={"storage_location": "Annex B", "reason": "Space"})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["item"]["storage_location"] == "Annex B"
    assert body["custody"][-1]["kind"] == "MOVED"
    assert body["custody"][-1]["details"]["from_location"] == "HQ property room, locker 14"
    resp = caller.post(f"/api/v1/evidence/{item.id}/storage-location",
                       json={"storage_location": "Annex C"})
    assert resp.status_code in (400, 422) and "reason" in json.dumps(resp.get_json())

    outsider = api_caller(app, team.outsider[0])
    assert outsider.get(f"/api/v1/evidence/{item.id}/label").status_code == 404
    resp = outsider.post(f"/api/v1/evidence/{item.id}/storage-location",
                         json={"storage_location": "Mine", "reason": "x"})
    assert resp.status_code == 404
    db.session.expire_all()
    assert db.session.get(EvidenceItem, item.id).storage_location == "Annex B"


def test_the_item_page_shows_the_qr_code_and_an_outsider_gets_404(app, team):
    user_browser, user = browser(app, agency=team.lead_agency)
    cases.add_member(actor=team.lead[1], case_id=team.case_id, user_id=user.id,
                     case_role="investigator")
    item = physical(team.lead[1], team.case_id)
    page = user_browser.get(f"/evidence/{item.id}")
    assert page.status_code == 200
    html = page.data.decode()
    assert 'data-testid="item-qr"' in html and 'class="evidence-qr"' in html
    assert f'href="/evidence/{item.id}/label.pdf"' in html
    resp = user_browser.get(f"/evidence/{item.id}/label.pdf")
    assert resp.status_code == 200 and resp.data.startswith(b"%PDF-")
    # only the lead (the custodian) sees the move form; the form is refused for others
    assert 'data-testid="move-form"' not in html
    resp = user_browser.post(f"/evidence/{item.id}/storage-location",
                             data={"storage_location": "Annex", "reason": "x"})
    assert resp.status_code == 403

    outsider_browser, _ = browser(app)  # another agency, not on the case
    assert outsider_browser.get(f"/evidence/{item.id}").status_code == 404
    assert outsider_browser.get(f"/evidence/{item.id}/label.pdf").status_code == 404
    # not signed in: the QR code leads to the sign-in page, not to the item
    anonymous = app.test_client().get(f"/evidence/{item.id}", headers={"Accept": "text/html"})
    assert anonymous.status_code in (302, 401)
    assert item.number.encode() not in anonymous.data


def test_moving_from_the_item_page(app, team):
    user_browser, user = browser(app, agency=team.lead_agency)
    cases.add_member(actor=team.lead[1], case_id=team.case_id, user_id=user.id,
                     case_role="investigator")
    item = physical(team.lead[1], team.case_id)
    # the item is handed to the browser's user, who then holds it
    request = service.transfer(actor=team.lead[1], item_id=item.id, to_user_id=user.id,
                               reason="Lab run")
    from tests.factories_investigations import actor_for

    service.accept_transfer(actor=actor_for(user), transfer_id=request.id)
    html = user_browser.get(f"/evidence/{item.id}").data.decode()
    assert 'data-testid="move-form"' in html
    resp = user_browser.post(f"/evidence/{item.id}/storage-location",
                             data={"storage_location": "", "reason": ""})
    assert resp.status_code == 422 and b"Required." in resp.data
    resp = user_browser.post(f"/evidence/{item.id}/storage-location",
                             data={"storage_location": "Annex B, shelf 2",
                                   "reason": "Locker full"})
    assert resp.status_code == 302
    html = user_browser.get(f"/evidence/{item.id}").data.decode()
    assert "Annex B, shelf 2" in html and "Locker full" in html
