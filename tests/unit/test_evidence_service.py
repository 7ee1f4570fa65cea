"""Evidence service on the local folder backend: ingest, custody, need to know, verify."""
from __future__ import annotations

import hashlib
import io
import json
import secrets
from pathlib import Path

import pytest
from sqlalchemy import func, select

from taskforce.audit.models import AuditEvent
from taskforce.errors import Conflict, Invalid, NotFound
from taskforce.evidence import service
from taskforce.evidence.models import CustodyEvent, EvidenceItem
from taskforce.evidence.storage import LocalFolderStore, UploadInterrupted, get_store, key_for
from taskforce.extensions import db
from taskforce.investigations import service as cases
from taskforce.investigations import timeline
from tests.factories_investigations import make_case, person


@pytest.fixture()
def ev_app(app):
    from taskforce import evidence

    if "evidence" not in app.blueprints:
        evidence.init_app(app)
    return app


@pytest.fixture()
def lead(ev_app):
    return person()


@pytest.fixture()
def case_id(lead):
    return make_case(lead[1])


def _store() -> LocalFolderStore:
    store = get_store()
    assert isinstance(store, LocalFolderStore)
    return store


def _ingest(actor, case_id, data: bytes, **kw):
    kw.setdefault("description", "Phone extraction")
    kw.setdefault("filename", "extraction.bin")
    return service.ingest(actor=actor, case_id=case_id, stream=io.BytesIO(data), **kw)


def _items() -> int:
    return db.session.scalar(select(func.count()).select_from(EvidenceItem))


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


class Exploding(io.RawIOBase):
    """Gives `good` bytes, then fails as a dropped connection would."""

    def __init__(self, good: int):
        self.left = good

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            raise ConnectionResetError("client went away")
        n = min(n if n > 0 else 65536, self.left)
        self.left -= n
        return b"x" * n


# --- ingest -------------------------------------------------------------------------------

def test_recorded_hashes_are_those_of_the_bytes(lead, case_id):
    data = b"%PDF-1.7\n" + secrets.token_bytes(3 * 1024 * 1024 + 17)
    item = _ingest(lead[1], case_id, data, filename="../../statement.txt", source="subpoena_return")
    assert item.sha256 == hashlib.sha256(data).hexdigest()
    assert item.md5 == hashlib.md5(data).hexdigest()
    assert item.size == len(data)
    assert item.content_type == "application/pdf"  # from the bytes, not the .txt name
    assert item.original_filename == "statement.txt"
    assert item.storage_key == key_for(item.sha256)
    number = db.session.get(cases.Case, case_id).number
    assert item.number == f"{number}-E0001"
    stored = _store().root / item.storage_key
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == item.sha256
    assert stored.stat().st_mode & 0o222 == 0  # read-only
    events = db.session.scalars(select(CustodyEvent).where(CustodyEvent.item_id == item.id)
                                .order_by(CustodyEvent.seq)).all()
    assert [e.kind for e in events] == ["COLLECTED", "RECEIVED"]
    assert json.loads(events[1].details)["sha256"] == item.sha256
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "evidence.ingest",
                                    AuditEvent.object_id == str(item.id))) == 1


def test_large_stream_hashes_across_chunks(lead, case_id):
    data = secrets.token_bytes(8 * 1024 * 1024 * 2 + 12345)  # three chunks of the reader
    item = _ingest(lead[1], case_id, data)
    assert item.sha256 == hashlib.sha256(data).hexdigest()
    assert item.md5 == hashlib.md5(data).hexdigest()
    assert item.size == len(data)


def test_same_bytes_twice_one_object_two_records(lead, case_id):
    data = secrets.token_bytes(50_000)
    first = _ingest(lead[1], case_id, data)
    second = _ingest(lead[1], case_id, data, description="Same file from the subpoena return")
    assert first.id != second.id and first.sha256 == second.sha256
    assert (first.number, second.number)[1].endswith("E0002")
    objects = [p for p in _files(_store().root / "sha256")]
    assert len(objects) == 1
    received = db.session.scalar(select(CustodyEvent).where(CustodyEvent.item_id == second.id,
                                                            CustodyEvent.kind == "RECEIVED"))
    assert json.loads(received.details)["deduplicated"] is True


def test_expected_hash_mismatch_refused_nothing_left(lead, case_id):
    data = secrets.token_bytes(10_000)
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(Invalid) as refused:
        _ingest(lead[1], case_id, data, expected_sha256=wrong)
    assert refused.value.status == 422
    assert wrong in refused.value.message and hashlib.sha256(data).hexdigest() in refused.value.message
    assert _items() == 0
    assert _files(_store().root / "sha256") == []
    assert _files(_store().staging) == []


def test_expected_hash_that_matches_is_accepted(lead, case_id):
    data = secrets.token_bytes(1000)
    item = _ingest(lead[1], case_id, data, expected_sha256=hashlib.sha256(data).hexdigest().upper())
    assert item.sha256 == hashlib.sha256(data).hexdigest()


def test_stream_failing_midway_leaves_no_record_no_file(lead, case_id):
    with pytest.raises(UploadInterrupted):
        service.ingest(actor=lead[1], case_id=case_id, stream=Exploding(20 * 1024 * 1024),
                       description="dropped upload")
    assert _items() == 0
    assert _files(_store().root / "sha256") == []
    assert _files(_store().staging) == []


def test_empty_stream_refused(lead, case_id):
    with pytest.raises(Invalid):
        _ingest(lead[1], case_id, b"")
    assert _items() == 0


def test_bad_metadata_refused_before_any_byte_is_read(lead, case_id):
    stream = Exploding(0)  # reading it would raise
    with pytest.raises(Invalid) as refused:
        service.ingest(actor=lead[1], case_id=case_id, stream=stream, description="",
                       source="rumour", collected_at="yesterday")
    assert set(refused.value.fields) == {"description", "source", "collected_at"}


def test_too_large_refused(ev_app, lead, case_id):
    ev_app.config["EVIDENCE_MAX_BYTES"] = 1000
    with pytest.raises(Exception) as refused:
        _ingest(lead[1], case_id, secrets.token_bytes(5000))
    assert getattr(refused.value, "status", None) == 413
    assert _items() == 0 and _files(_store().staging) == []


def test_reader_cannot_add_evidence(lead, case_id):
    from taskforce.accounts.models import Agency

    partner_user, partner = person()
    cases.grant_partner(actor=lead[1], case_id=case_id, agency_id=partner_user.agency_id,
                        access="read")
    assert db.session.get(Agency, partner_user.agency_id)
    with pytest.raises(Exception) as refused:
        _ingest(partner, case_id, b"data")
    assert getattr(refused.value, "status", None) == 403
    assert _items() == 0


def test_physical_item(lead, case_id):
    item = service.add_physical_item(actor=lead[1], case_id=case_id, description="Ledger book",
                                     storage_location="Locker 12, bag 448")
    assert item.kind == "physical" and item.sha256 is None
    view = service.get_item(actor=lead[1], item_id=item.id)
    assert [e.kind for e in view.events] == ["COLLECTED", "RECEIVED"]
    assert view.events[1].place == "Locker 12, bag 448"
    with pytest.raises(Conflict):
        service.download(actor=lead[1], item_id=item.id)


# --- need to know -------------------------------------------------------------------------

def test_outsider_cannot_see_items(lead, case_id):
    item = _ingest(lead[1], case_id, b"secret bytes")
    _, outsider = person()
    with pytest.raises(NotFound):
        service.get_item(actor=outsider, item_id=item.id)
    with pytest.raises(NotFound):
        service.list_items(actor=outsider, case_id=case_id)
    with pytest.raises(NotFound):
        service.download(actor=outsider, item_id=item.id)
    with pytest.raises(NotFound):
        service.verify(actor=outsider, item_id=item.id)
    with pytest.raises(NotFound):
        service.get_item(actor=outsider, item_id=item.id + 999)
    assert db.session.scalar(select(func.count()).select_from(CustodyEvent)
                             .where(CustodyEvent.kind == "ACCESSED")) == 0


# --- custody ------------------------------------------------------------------------------

def test_download_appends_accessed(lead, case_id):
    data = secrets.token_bytes(20_000)
    item = _ingest(lead[1], case_id, data)
    dl = service.download(actor=lead[1], item_id=item.id)
    assert b"".join(dl.chunks) == data
    view = service.get_item(actor=lead[1], item_id=item.id)
    assert [e.kind for e in view.events] == ["COLLECTED", "RECEIVED", "ACCESSED"]
    accessed = view.events[-1]
    assert accessed.user_id == lead[0].id and accessed.username == lead[0].username
    assert accessed.prev_hash == view.events[1].hash
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "evidence.download")) == 1


def test_transfer_between_people(lead, case_id):
    item = _ingest(lead[1], case_id, b"bytes")
    analyst_user, analyst = person(roles=("analyst",))
    cases.add_member(actor=lead[1], case_id=case_id, user_id=analyst_user.id, case_role="analyst")
    request = service.transfer(actor=lead[1], item_id=item.id,
                               to_username=analyst_user.username, place="Lab",
                               reason="Forensic examination")
    assert request.status == "pending"  # nothing moves until the receiver accepts
    assert db.session.get(EvidenceItem, item.id).custodian_id == lead[0].id
    event = service.accept_transfer(actor=analyst, transfer_id=request.id)
    assert event.kind == "TRANSFERRED" and event.user_id == analyst_user.id
    details = json.loads(event.details)
    assert details["from_user_id"] == lead[0].id and details["to_user_id"] == analyst_user.id
    assert db.session.get(EvidenceItem, item.id).custodian_id == analyst_user.id
    # the new custodian may hand it on; an outsider may not receive it
    _, outsider_actor = person()
    with pytest.raises(Invalid) as refused:
        service.transfer(actor=analyst, item_id=item.id, to_user_id=outsider_actor.user_id,
                         reason="x")
    assert "to_user" in refused.value.fields
    with pytest.raises(Invalid):
        service.transfer(actor=analyst, item_id=item.id, to_user_id=lead[0].id, reason="")


def test_verify_passes_then_finds_a_flipped_byte(lead, case_id):
    data = secrets.token_bytes(100_000)
    item = _ingest(lead[1], case_id, data)
    report = service.verify(actor=lead[1], item_id=item.id)
    assert report.ok and report.actual_sha256 == item.sha256

    path = _store().root / item.storage_key
    path.chmod(0o644)
    with open(path, "r+b") as f:  # tamper behind the app's back
        f.seek(5000)
        byte = f.read(1)
        f.seek(5000)
        f.write(bytes([byte[0] ^ 0x01]))
    report = service.verify(actor=lead[1], item_id=item.id)
    assert not report.ok
    tampered = bytearray(data)
    tampered[5000] ^= 0x01
    assert report.expected_sha256 == hashlib.sha256(data).hexdigest()
    assert report.actual_sha256 == hashlib.sha256(tampered).hexdigest()
    view = service.get_item(actor=lead[1], item_id=item.id)
    assert view.item.integrity == "mismatch"
    last = json.loads(view.events[-1].details)
    assert view.events[-1].kind == "VERIFIED" and last["ok"] is False
    assert last["actual_sha256"] == report.actual_sha256


def test_verify_missing_object(lead, case_id):
    item = _ingest(lead[1], case_id, b"to be lost")
    path = _store().root / item.storage_key
    path.unlink()
    from taskforce.accounts.permissions import Actor

    report = service.verify(actor=Actor.system("sweep"), item_id=item.id)
    assert not report.ok and "missing" in report.problem
    assert db.session.get(EvidenceItem, item.id).integrity == "missing"


def test_timeline_shows_evidence_collected(lead, case_id):
    item = _ingest(lead[1], case_id, b"t", description="Ad screenshot\nsecond line",
                   collected_at="2024-03-01T10:00:00Z", collected_place="Motel 6")
    events = cases.timeline(actor=lead[1], case_id=case_id)
    ours = [e for e in events if e.kind == "evidence"]
    assert len(ours) == 1
    assert item.number in ours[0].summary and "Ad screenshot" in ours[0].summary
    assert ours[0].at.isoformat().startswith("2024-03-01T10:00")
    assert "evidence" in timeline.sources()
