"""Prosecutor packages on the local folder backend: the ZIP, Bates numbers, the signed
manifest checked by the offline verifier, survivor redaction, and expiring access."""
from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from fpdf import FPDF
from pypdf import PdfReader
from sqlalchemy import select

from taskforce.audit.models import AuditEvent
from taskforce.errors import Forbidden, Invalid, NotFound
from taskforce.evidence import packages, service
from taskforce.evidence import verify as verifier
from taskforce.evidence.models import CustodyEvent, EvidenceItem, Package
from taskforce.extensions import db
from taskforce.investigations import service as cases
from tests.factories_graph import add_person, closed_bolt_uri, ensure_graph_registered, make_team
from tests.factories_investigations import person

SURVIVOR = "Marisol Quintanilla"


@pytest.fixture()
def app_environ(app_environ):
    return {**app_environ, "NEO4J_URI": closed_bolt_uri(), "NEO4J_PASSWORD": "unused",
            "PACKAGE_BATES_PREFIX": "KESTREL"}


@pytest.fixture()
def team(app):
    from taskforce import evidence

    ensure_graph_registered(app)
    if "evidence" not in app.blueprints:
        evidence.init_app(app)
    return make_team()


def pdf_bytes(*pages: str) -> bytes:
    pdf = FPDF()
    for text in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        pdf.cell(0, 10, text)
    return bytes(pdf.output())


def ingest(actor, case_id, data: bytes, description: str, filename: str) -> EvidenceItem:
    return service.ingest(actor=actor, case_id=case_id, stream=io.BytesIO(data),
                          description=description, filename=filename)


def build(actor, case_id, items) -> Package:
    package = packages.request_package(actor=actor, case_id=case_id,
                                      item_ids=[i.id if hasattr(i, "id") else i for i in items])
    package = db.session.get(Package, package.id, populate_existing=True)
    assert package.status == "ready", package.error
    return package


def save(actor, package_id, tmp_path: Path) -> Path:
    dl = packages.download_package(actor=actor, package_id=package_id)
    path = tmp_path / dl.filename
    with open(path, "wb") as f:
        f.writelines(dl.chunks)
    return path


def run_verifier(capsys, *args) -> tuple[int, str]:
    code = verifier.main([str(a) for a in args])
    return code, capsys.readouterr().out


def rewrite(src: Path, dst: Path, change) -> None:
    """Copy a ZIP member by member, letting `change(name, data)` alter one."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, change(info.filename, zin.read(info)))


def test_a_package_verifies_offline_and_a_changed_file_is_named(team, tmp_path, capsys):
    lead = team.lead[1]
    report = ingest(lead, team.case_id, pdf_bytes("Subpoena return p1", "p2", "p3"),
                    "Bank subpoena return", "bank.pdf")
    dump = ingest(lead, team.case_id, b"\x00\x01 phone dump " * 5000, "Phone extraction",
                  "phone.bin")
    ids = [report.id, dump.id]
    package = build(lead, team.case_id, ids)
    assert package.sha256 and package.size and package.key_fingerprint
    assert package.bates_first == 1 and package.bates_last >= 5
    path = save(lead, package.id, tmp_path)

    code, out = run_verifier(capsys, path)
    assert code == 0, out
    assert "INTACT" in out and package.key_fingerprint in out

    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
        assert {"manifest.json", "manifest.sig", "manifest.csv", "custody-report.pdf",
                "certification-902-14.pdf", "signing-key.pub.pem"} <= set(names)
        # items exactly as collected
        by_number = {i["number"]: i for i in manifest["items"]}
        item_file = by_number[report.number]["file"]
        assert zf.read(item_file) == pdf_bytes("Subpoena return p1", "p2", "p3") or \
            __import__("hashlib").sha256(zf.read(item_file)).hexdigest() == report.sha256
        # manifest.csv: a row per item with both hashes
        rows = zf.read("manifest.csv").decode().splitlines()
        assert rows[0].startswith("number,description,kind,size,sha256,md5,collected_by")
        assert any(dump.sha256 in r and dump.md5 in r for r in rows)
        # Bates numbers on every PDF page, continuous across the package
        labels = []
        for doc in manifest["bates"]:
            for page in PdfReader(io.BytesIO(zf.read(doc["file"]))).pages:
                found = re.findall(r"KESTREL-\d{6}", page.extract_text())
                assert found, f"no Bates number on a page of {doc['file']}"
                labels.append(found[-1])
        assert labels == [f"KESTREL-{n:06d}" for n in range(1, len(labels) + 1)]
        assert labels[-1] == manifest["package"]["bates_last"]
        # the certification prints the key fingerprint
        cert = "".join(p.extract_text() for p in
                       PdfReader(io.BytesIO(zf.read("certification-902-14.pdf"))).pages)
        assert "902(14)" in cert and package.key_fingerprint in cert.replace("\n", "")

    # every item got EXPORTED, the download ACCESSED
    for item_id in ids:
        kinds = [e.kind for e in db.session.scalars(
            select(CustodyEvent).where(CustodyEvent.item_id == item_id)
            .order_by(CustodyEvent.seq))]
        assert kinds[-2:] == ["EXPORTED", "ACCESSED"]

    # one item file changed inside the ZIP: the verifier names it
    changed = tmp_path / "changed.zip"
    rewrite(path, changed, lambda n, d: d.replace(b"phone dump", b"phone DUMP") if n == by_number[
        dump.number]["file"] else d)
    code, out = run_verifier(capsys, changed)
    assert code == 1 and by_number[dump.number]["file"] in out and "MISMATCH" in out

    # the manifest edited (a hash swapped to match a forged file): signature fails
    forged = tmp_path / "forged.zip"
    rewrite(path, forged, lambda n, d: d.replace(b"Phone extraction", b"Phone extractioN")
            if n == "manifest.json" else d)
    code, out = run_verifier(capsys, forged)
    assert code == 1 and "SIGNATURE INVALID" in out

    # a byte flipped in the raw ZIP (no rewrite): the CRC check names the member
    raw = bytearray(path.read_bytes())
    at = raw.find(b"phone dump")
    raw[at] ^= 0x01
    flipped = tmp_path / "flipped.zip"
    flipped.write_bytes(bytes(raw))
    code, out = run_verifier(capsys, flipped)
    assert code == 1 and by_number[dump.number]["file"] in out

    # a pinned fingerprint that is not the package's key is refused
    code, out = run_verifier(capsys, path, "--fingerprint", "00" * 32)
    assert code == 1 and "not the expected" in out


def test_a_survivor_name_is_absent_from_every_byte_without_release(team, tmp_path):
    lead, investigator = team.lead[1], team.investigator[1]
    add_person(lead, team.case_id, SURVIVOR, role="victim", aliases=["La Chiquita"])
    prosecutor_user, prosecutor = person(agency=team.lead_agency, roles=("prosecutor",))
    cases.add_member(actor=lead, case_id=team.case_id, user_id=prosecutor_user.id,
                     case_role="prosecutor")
    named = ingest(investigator, team.case_id, pdf_bytes("Bank records"),
                   f"Bank records of {SURVIVOR} (la chiquita)", "marisol-bank.pdf")
    interview = ingest(investigator, team.case_id, f"Interview with {SURVIVOR}".encode(),
                       "Interview transcript", "interview.txt")
    service.flag_survivor_item(actor=investigator, item_id=interview.id, reason="names her")
    unmarked = ingest(investigator, team.case_id, b"notes: QUINTANILLA called",
                      "Detective notes", "notes.txt")
    plain = ingest(investigator, team.case_id, b"ledger rows", "Ledger", "ledger.csv")

    package = build(prosecutor, team.case_id, [named, interview, unmarked, plain])
    path = save(prosecutor, package.id, tmp_path)
    needles = [w.lower().encode() for w in SURVIVOR.split()] + [b"chiquita"]
    raw = path.read_bytes().lower()
    assert not any(n in raw for n in needles)
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        for name in zf.namelist():
            data = zf.read(name)
            assert not any(n in data.lower() for n in needles), name
            if name.endswith(".pdf"):
                text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
                assert not any(n.decode() in text.lower() for n in needles), name
    withheld = {w["number"] for w in manifest["withheld"]}
    assert withheld == {interview.number, unmarked.number}
    described = {i["number"]: i["description"] for i in manifest["items"]}
    assert re.match(r"Bank records of Survivor-\w+", described[named.number])

    # released by the victim specialist: the next package shows her name and the item
    specialist = team.specialist[1]
    survivor_id = service.case_survivors(team.case_id)[0].id
    with pytest.raises(Forbidden):
        service.release_survivor_identity(actor=investigator, case_id=team.case_id,
                                          entity_id=survivor_id, reason="trial")
    service.release_survivor_identity(actor=specialist, case_id=team.case_id,
                                      entity_id=survivor_id, reason="She testifies")
    service.release_survivor_item(actor=specialist, item_id=interview.id, reason="Exhibit")
    again = build(prosecutor, team.case_id, [named, interview])
    with zipfile.ZipFile(save(prosecutor, again.id, tmp_path)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert SURVIVOR in json.dumps(manifest)
        assert not manifest["withheld"]


def test_prosecutor_access_expires(team, tmp_path, monkeypatch):
    lead = team.lead[1]
    item = ingest(lead, team.case_id, b"evidence bytes", "Ad screenshot", "ad.png")
    package = build(lead, team.case_id, [item])
    prosecutor_user, prosecutor = person(roles=("prosecutor",))  # another agency: no case access
    with pytest.raises(NotFound):
        packages.download_package(actor=prosecutor, package_id=package.id)
    with pytest.raises(Invalid):
        packages.grant_package_access(actor=lead, package_id=package.id,
                                     to_user_id=team.investigator[0].id)
    grant = packages.grant_package_access(actor=lead, package_id=package.id,
                                         to_user_id=prosecutor_user.id,
                                         expires_at=(service.now() + timedelta(days=2))
                                         .isoformat())
    assert save(prosecutor, package.id, tmp_path).stat().st_size == package.size
    later = grant.expires_at + timedelta(minutes=1)
    monkeypatch.setattr(service, "now", lambda: later)
    with pytest.raises(Forbidden) as refused:
        packages.download_package(actor=prosecutor, package_id=package.id)
    assert "expired" in refused.value.message
    denied = db.session.scalar(select(AuditEvent).where(
        AuditEvent.action == "evidence.package_download", AuditEvent.outcome == "denied"))
    assert denied is not None
    accessed = db.session.scalars(select(CustodyEvent).where(
        CustodyEvent.item_id == item.id, CustodyEvent.kind == "ACCESSED")).all()
    assert len(accessed) == 1  # the prosecutor's download; the refused one left none


def test_only_a_prosecutor_or_the_lead_builds_and_items_must_be_the_cases(team):
    lead, investigator = team.lead[1], team.investigator[1]
    item = ingest(lead, team.case_id, b"x" * 10, "Item", "x.bin")
    with pytest.raises(Forbidden):
        packages.request_package(actor=investigator, case_id=team.case_id, item_ids=[item.id])
    with pytest.raises(Invalid) as bad:
        packages.request_package(actor=lead, case_id=team.case_id, item_ids=[item.id, 999999])
    assert "item_ids" in bad.value.fields
    with pytest.raises(Invalid):
        packages.request_package(actor=lead, case_id=team.case_id, item_ids=[])
    assert db.session.scalar(select(Package.id)) is None


def test_broken_and_encrypted_pdfs_go_in_as_collected_with_a_note(team, tmp_path, capsys):
    from pypdf import PdfWriter

    lead = team.lead[1]
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt("secret")
    locked = io.BytesIO()
    writer.write(locked)
    encrypted = ingest(lead, team.case_id, locked.getvalue(), "Locked statement", "locked.pdf")
    broken = ingest(lead, team.case_id, b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage",
                    "Truncated return", "broken.pdf")
    package = build(lead, team.case_id, [encrypted, broken])
    path = save(lead, package.id, tmp_path)
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    notes = " ".join(manifest["notes"])
    assert encrypted.number in notes and broken.number in notes and "not Bates-stamped" in notes
    assert all(i["file"] and i["bates"] is None for i in manifest["items"])
    assert run_verifier(capsys, path)[0] == 0


def test_the_verifier_refuses_a_missing_signature_and_an_unlisted_file(team, tmp_path, capsys):
    lead = team.lead[1]
    item = ingest(lead, team.case_id, b"bytes", "Item", "x.bin")
    path = save(lead, build(lead, team.case_id, [item]).id, tmp_path)
    unsigned = tmp_path / "unsigned.zip"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(unsigned, "w") as zout:
        for info in zin.infolist():
            if info.filename != "manifest.sig":
                zout.writestr(info, zin.read(info))
    code, out = run_verifier(capsys, unsigned)
    assert code == 1 and "manifest.sig is missing" in out
    extra = tmp_path / "extra.zip"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(extra, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        zout.writestr("items/planted.txt", b"not from the evidence store")
    code, out = run_verifier(capsys, extra)
    assert code == 1 and "items/planted.txt" in out
    code, out = run_verifier(capsys, tmp_path / "nope.zip")
    assert code == 1 and "not a readable ZIP" in out


def test_item_pdfs_are_stamped_in_a_bounded_child(tmp_path):
    from taskforce.evidence import reports

    good = tmp_path / "good.pdf"
    good.write_bytes(pdf_bytes("one", "two"))
    data, pages = reports.stamp_pdf_bounded(str(good), "AUSA", 41)
    texts = [p.extract_text() for p in PdfReader(io.BytesIO(data)).pages]
    assert pages == 2 and "AUSA-000041" in texts[0] and "AUSA-000042" in texts[1]
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"%PDF-1.4\n" + b"\x00" * 500)
    with pytest.raises(ValueError, match="could not be read"):
        reports.stamp_pdf_bounded(str(junk), "AUSA", 1)
    with pytest.raises(ValueError, match="still stamping"):
        reports.stamp_pdf_bounded(str(good), "AUSA", 1, time_limit=0.01)
    with pytest.raises(ValueError):  # the memory bound ends it, not the caller
        reports.stamp_pdf_bounded(str(good), "AUSA", 1, memory_limit=64 * 1024 * 1024)
