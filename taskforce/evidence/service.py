"""Evidence service: the only place that creates items or appends to their custody.

Plain functions with keyword-only arguments and the actor passed in. Each
reaches the case through `get_case_or_404` (the one access check): an item
of a case the actor may not read answers NotFound. Each change writes its
custody event(s) and its audit record in ONE transaction and commits once.

Ingest order (DESIGN.md invariant 1): validate the metadata, then store the
bytes (hashed in the same pass), then create the record. The record exists
only if the object was stored and its hash checked; a failure before that
leaves no record, and the store leaves no object.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from flask import current_app, has_app_context
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from taskforce.accounts.models import User
from taskforce.accounts.permissions import Actor
from taskforce.audit import service as audit
from taskforce.errors import Conflict, DomainError, Invalid, NotFound
from taskforce.evidence import ledger, policy
from taskforce.evidence.models import (
    SOURCES,
    CustodyEvent,
    EvidenceCounter,
    EvidenceItem,
)
from taskforce.evidence.storage import (
    DEFAULT_MAX_BYTES,
    EvidenceStore,
    ObjectMissing,
    StoredObject,
    check_sha256,
    get_store,
    hash_chunks,
)
from taskforce.extensions import db
from taskforce.investigations import policy as case_policy
from taskforce.investigations.models import Case
from taskforce.investigations.policy import READ, WRITE
from taskforce.investigations.service import get_case_or_404
from taskforce.investigations.timeline import TimelineEvent, timeline_source
from taskforce.validation import FieldErrors

DESCRIPTION_MAX = 4000
NAME_MAX = 200
PLACE_MAX = 300
REASON_MAX = 2000
FILENAME_MAX = 255
CLOCK_SKEW = timedelta(minutes=5)

_ITEM_NOT_FOUND = "No such evidence item, or it is not shared with you."


def now() -> datetime:
    """The clock every service reads (tests replace it)."""
    return datetime.now(UTC)


# --- validation ---------------------------------------------------------------------------

class _Errors(FieldErrors):
    """Evidence metadata: text is optional unless said, NULs are dropped (a
    device's export carries them), and a missing choice takes its default."""

    def text(self, name: str, value: Any, *, max_len: int, required: bool = False) -> str:
        if value is None:
            value = ""
        if not isinstance(value, str):
            self.add(name, "Must be text.")
            return ""
        value = value.replace("\x00", "").strip()
        if required and not value:
            self.add(name, "Required.")
        elif len(value) > max_len:
            self.add(name, f"At most {max_len} characters.")
        return value

    def choice(self, name: str, value: Any, choices: dict[str, str],  # type: ignore[override]
               default: str) -> str:
        if value in (None, ""):
            return default
        if value not in choices:
            self.add(name, "Must be one of: " + ", ".join(choices) + ".")
            return default
        return value

    def moment(self, name: str, value: Any, *, default: datetime) -> datetime:
        """An ISO 8601 time; without a zone it is taken as UTC. Not in the future."""
        if value in (None, ""):
            return default
        parsed: datetime | None = None
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, str):
            text = value.strip()
            if text.endswith(("Z", "z")):
                text = text[:-1] + "+00:00"
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                parsed = None
        if parsed is None:
            self.add(name, "Must be a date and time (YYYY-MM-DDTHH:MM, UTC unless a zone "
                           "is given).")
            return default
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        parsed = parsed.astimezone(UTC)
        if parsed > now() + CLOCK_SKEW:
            self.add(name, "Cannot be in the future.")
        return parsed


def clean_filename(value: Any) -> str | None:
    """The last path component, printable, at most 255 characters; None if nothing is left."""
    if not isinstance(value, str):
        return None
    name = re.split(r"[\\/]", value)[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", name)
                   if unicodedata.category(ch)[0] != "C").strip()
    if name in ("", ".", ".."):
        return None
    return name[:FILENAME_MAX]


# --- content type from the bytes ----------------------------------------------------------

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF-", "application/pdf"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"BM", "image/bmp"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"PK\x05\x06", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"Rar!\x1a\x07", "application/vnd.rar"),
    (0, b"BZh", "application/x-bzip2"),
    (0, b"\xfd7zXZ\x00", "application/x-xz"),
    (257, b"ustar", "application/x-tar"),
    (0, b"SQLite format 3\x00", "application/vnd.sqlite3"),
    (0, b"EVF\x09\x0d\x0a\xff\x00", "application/x-ewf"),  # EnCase E01 forensic image
    (0, b"ID3", "audio/mpeg"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"\x1aE\xdf\xa3", "video/webm"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),  # old Office, MSG
    (0, b"{\\rtf", "application/rtf"),
    (0, b"MZ", "application/x-msdownload"),
    (0, b"\x7fELF", "application/x-executable"),
)
_RIFF = {b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo", b"WEBP": "image/webp"}
_FTYP = {b"heic": "image/heic", b"heix": "image/heic", b"mif1": "image/heif",
         b"qt  ": "video/quicktime", b"M4A ": "audio/mp4", b"3gp4": "video/3gpp",
         b"3gp5": "video/3gpp"}


def detect_content_type(head: bytes) -> str:
    """The media type the first bytes show (never what the client claims)."""
    for offset, magic, media in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return media
    if head[:4] == b"RIFF" and head[8:12] in _RIFF:
        return _RIFF[head[8:12]]
    if head[4:8] == b"ftyp":
        return _FTYP.get(head[8:12], "video/mp4")
    if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    sample = head[:4096]
    if b"\x00" not in sample:
        try:
            text = sample.decode("utf-8")
        except UnicodeDecodeError as e:
            text = sample[:e.start].decode("utf-8") if e.start > len(sample) - 4 else None
        if text is not None:
            stripped = text.lstrip().lower()
            if stripped.startswith(("<!doctype html", "<html")):
                return "text/html"
            if stripped.startswith("<?xml"):
                return "application/xml"
            return "text/plain"
    return "application/octet-stream"


# --- helpers ------------------------------------------------------------------------------

def _max_bytes() -> int:
    if has_app_context():
        return int(current_app.config.get("EVIDENCE_MAX_BYTES") or DEFAULT_MAX_BYTES)
    return DEFAULT_MAX_BYTES


def _ensure_open(case: Case) -> None:
    if case.status == "closed":
        raise Conflict("This case is closed; reopen it before adding evidence to it.")


def _user(user_id: int | None) -> User | None:
    return db.session.get(User, user_id) if user_id is not None else None


def _who(actor: Actor) -> dict[str, Any]:
    """Who, as the ledger keeps it: id and a snapshot of the names."""
    user = _user(actor.user_id)
    return {"user_id": actor.user_id, "username": actor.username,
            "user_name": user.full_name if user is not None else actor.username}


def _next_seq(case_id: int) -> int:
    """Allocate the next item number of a case, safely under concurrency (an atomic
    upsert, as for case numbers; a rollback gives the number back)."""
    table = EvidenceCounter.__table__
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover
        raise NotImplementedError(dialect)
    stmt = insert(table).values(case_id=case_id, last_value=1).on_conflict_do_update(
        index_elements=[table.c.case_id], set_={"last_value": table.c.last_value + 1},
    ).returning(table.c.last_value)
    return int(db.session.execute(stmt).scalar_one())


def _item_or_404(*, actor: Actor, item_id: Any, action, attempt: str
                 ) -> tuple[EvidenceItem, Case]:
    """The item and its case if the actor may do `action` to the case; else NotFound
    (or Forbidden for a case the actor may only read)."""
    row_id = item_id if isinstance(item_id, int) and not isinstance(item_id, bool) else None
    if row_id is None and isinstance(item_id, str) and item_id.strip().isdigit():
        row_id = int(item_id)
    item = db.session.get(EvidenceItem, row_id) if row_id and row_id < 2**31 else None
    if item is None:
        audit.record_now(actor=actor, action=attempt, outcome="denied",
                         object_type="evidence_item", object_id=item_id,
                         details={"reason": "no such item"})
        raise NotFound(_ITEM_NOT_FOUND)
    if policy.is_system(actor):
        return item, db.session.get(Case, item.case_id)
    try:
        case = get_case_or_404(actor=actor, case_id=item.case_id, action=action, attempt=attempt)
    except NotFound:
        raise NotFound(_ITEM_NOT_FOUND) from None
    return item, case


def _commit(message: str) -> None:
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(message) from None


# --- ingest -------------------------------------------------------------------------------

def ingest(*, actor: Actor, case_id: Any, stream: BinaryIO, filename: Any = None,
           description: Any = None, collected_at: Any = None, collected_by: Any = None,
           collected_place: Any = None, source: Any = None, expected_sha256: Any = None,
           store: EvidenceStore | None = None) -> EvidenceItem:
    """Store the bytes of `stream` (hashed in the same pass) and record them as an item.

    Needs WRITE on the case. Metadata is checked before a byte is read; the
    record, its COLLECTED and RECEIVED events and the audit record are written
    in one transaction after the store has the bytes and their hash is known
    (and equal to `expected_sha256`, if given).
    """
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE, attempt="evidence.ingest")
    _ensure_open(case)
    errors = _Errors()
    received_at = now()
    meta = {
        "description": errors.text("description", description, max_len=DESCRIPTION_MAX,
                                   required=True),
        "source": errors.choice("source", source, SOURCES, "other"),
        "collected_at": errors.moment("collected_at", collected_at, default=received_at),
        "collected_by": errors.text("collected_by", collected_by, max_len=NAME_MAX),
        "collected_place": errors.text("collected_place", collected_place, max_len=PLACE_MAX),
        "original_filename": clean_filename(filename),
    }
    expected = None
    if expected_sha256 not in (None, ""):
        try:
            expected = check_sha256(str(expected_sha256))
        except Invalid as err:
            errors.fields.update(err.fields)
    errors.raise_if_any()
    case_pk = case.id
    db.session.commit()  # no transaction stays open while the bytes stream in

    store = store or get_store()
    try:
        stored = store.put_stream(stream, expected_sha256=expected, max_bytes=_max_bytes())
    except DomainError as err:
        db.session.rollback()
        audit.record_now(actor=actor, action="evidence.ingest",
                         outcome="error" if err.status >= 500 else "failed",
                         object_type="case", object_id=case_pk, case_id=case_pk,
                         details={"reason": err.code, "message": err.message[:300]})
        raise
    return _record_digital(actor=actor, case_id=case_pk, stored=stored, meta=meta,
                           received_at=received_at, store_name=store.name)


def _record_digital(*, actor: Actor, case_id: int, stored: StoredObject, meta: dict[str, Any],
                    received_at: datetime, store_name: str) -> EvidenceItem:
    # Access is checked again: it may have been withdrawn while the bytes streamed.
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE, attempt="evidence.ingest")
    _ensure_open(case)
    who = _who(actor)
    collected_by = meta["collected_by"] or who["user_name"] or ""
    item = _new_item(case, actor, kind="digital", description=meta["description"],
                     source=meta["source"], collected_at=meta["collected_at"],
                     collected_by=collected_by, collected_place=meta["collected_place"],
                     size=stored.size, sha256=stored.sha256, md5=stored.md5,
                     content_type=detect_content_type(stored.head),
                     original_filename=meta["original_filename"],
                     storage_backend=store_name, storage_key=stored.key)
    _collected_event(item, actor, who, collected_by)
    ledger.append(db.session, item, kind="RECEIVED", at=now(), place=f"evidence store "
                  f"({store_name}) {stored.key}", reason="Uploaded to the evidence store",
                  details={"sha256": stored.sha256, "md5": stored.md5, "size": stored.size,
                           "storage_key": stored.key, "backend": store_name,
                           "version_id": stored.version_id,
                           "deduplicated": stored.deduplicated,
                           "filename": meta["original_filename"],
                           "content_type": item.content_type,
                           "upload_started_at": received_at.isoformat()}, **who)
    audit.record(actor=actor, action="evidence.ingest", object_type="evidence_item",
                 object_id=item.id, case_id=case.id,
                 details={"number": item.number, "sha256": stored.sha256, "size": stored.size,
                          "deduplicated": stored.deduplicated,
                          "custody_hash": item.custody_hash})
    _commit("Another change to this case's evidence got there first; try again.")
    return item


def _new_item(case: Case, actor: Actor, **values: Any) -> EvidenceItem:
    seq = _next_seq(case.id)
    item = EvidenceItem(case_id=case.id, seq=seq, number=f"{case.number}-E{seq:04d}",
                        custodian_id=actor.user_id, created_by_id=actor.user_id,
                        created_at=now(), **values)
    db.session.add(item)
    db.session.flush()
    return item


def _collected_event(item: EvidenceItem, actor: Actor, who: dict[str, Any],
                     collected_by: str) -> None:
    # Collected by the uploader, or by someone named who may not be one of our users.
    by_actor = collected_by in (who["user_name"], who["username"])
    ledger.append(db.session, item, kind="COLLECTED", at=item.collected_at,
                  place=item.collected_place, reason=f"Collected ({SOURCES[item.source]})",
                  user_id=who["user_id"] if by_actor else None,
                  username=who["username"] if by_actor else None, user_name=collected_by,
                  details={"recorded_by": who["username"], "sha256": item.sha256,
                           "md5": item.md5, "size": item.size})


def add_physical_item(*, actor: Actor, case_id: Any, description: Any = None,
                      collected_at: Any = None, collected_by: Any = None,
                      collected_place: Any = None, source: Any = None,
                      storage_location: Any = None) -> EvidenceItem:
    """Record a physical exhibit (no bytes): where it is kept, and its custody."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE,
                           attempt="evidence.add_physical")
    _ensure_open(case)
    errors = _Errors()
    at = now()
    description = errors.text("description", description, max_len=DESCRIPTION_MAX,
                              required=True)
    source = errors.choice("source", source, SOURCES, "other")
    collected = errors.moment("collected_at", collected_at, default=at)
    collected_by = errors.text("collected_by", collected_by, max_len=NAME_MAX)
    collected_place = errors.text("collected_place", collected_place, max_len=PLACE_MAX)
    location = errors.text("storage_location", storage_location, max_len=PLACE_MAX,
                           required=True)
    errors.raise_if_any()
    who = _who(actor)
    collected_by = collected_by or who["user_name"] or ""
    item = _new_item(case, actor, kind="physical", description=description, source=source,
                     collected_at=collected, collected_by=collected_by,
                     collected_place=collected_place, storage_location=location)
    _collected_event(item, actor, who, collected_by)
    ledger.append(db.session, item, kind="RECEIVED", at=at, place=location,
                  reason="Booked into evidence storage", details={"storage_location": location},
                  **who)
    audit.record(actor=actor, action="evidence.add_physical", object_type="evidence_item",
                 object_id=item.id, case_id=case.id, details={"number": item.number})
    _commit("Another change to this case's evidence got there first; try again.")
    return item


# --- reading ------------------------------------------------------------------------------

@dataclass
class ItemView:
    item: EvidenceItem
    case: Case
    events: list[CustodyEvent]
    can_transfer: bool
    can_add: bool

    @property
    def custodian(self) -> User | None:
        return self.item.custodian


def list_items(*, actor: Actor, case_id: Any) -> list[EvidenceItem]:
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="evidence.list")
    items = list(db.session.scalars(select(EvidenceItem).where(EvidenceItem.case_id == case.id)
                                    .order_by(EvidenceItem.seq)))
    audit.record(actor=actor, action="evidence.list", object_type="case", object_id=case.id,
                 case_id=case.id, details={"items": len(items)})
    db.session.commit()
    return items


@dataclass
class EvidencePage:
    case: Case
    items: list[EvidenceItem]
    can_add: bool


def evidence_page(*, actor: Actor, case_id: Any) -> EvidencePage:
    """A case's items and whether the actor may add to them (one audited read)."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="evidence.list")
    level = case_policy.access(actor, case)
    items = list(db.session.scalars(select(EvidenceItem).where(EvidenceItem.case_id == case.id)
                                    .order_by(EvidenceItem.seq)))
    audit.record(actor=actor, action="evidence.list", object_type="case", object_id=case.id,
                 case_id=case.id, details={"items": len(items)})
    db.session.commit()
    return EvidencePage(case=case, items=items,
                        can_add=level >= WRITE and case.status != "closed")


def get_item(*, actor: Actor, item_id: Any) -> ItemView:
    item, case = _item_or_404(actor=actor, item_id=item_id, action=READ,
                              attempt="evidence.read")
    level = case_policy.access(actor, case)
    events = list(db.session.scalars(select(CustodyEvent).where(CustodyEvent.item_id == item.id)
                                     .order_by(CustodyEvent.seq)))
    audit.record(actor=actor, action="evidence.read", object_type="evidence_item",
                 object_id=item.id, case_id=case.id)
    db.session.commit()
    return ItemView(item=item, case=case, events=events,
                    can_transfer=policy.can_transfer(actor, item, level) and case.status != "closed",
                    can_add=level >= WRITE and case.status != "closed")


@dataclass
class Download:
    item: EvidenceItem
    chunks: Iterator[bytes]
    filename: str
    content_type: str
    size: int


def download(*, actor: Actor, item_id: Any, place: str = "", reason: str = "",
             store: EvidenceStore | None = None) -> Download:
    """Open the item's bytes, append ACCESSED (and the audit record), then hand back
    the chunks to stream. Nothing is appended if the bytes cannot be opened."""
    item, case = _item_or_404(actor=actor, item_id=item_id, action=READ,
                              attempt="evidence.download")
    if not item.is_digital:
        raise Conflict("A physical item has no bytes to download.")
    store = store or get_store()
    chunks = store.open_stream(item.sha256)
    try:
        ledger.append(db.session, item, kind="ACCESSED", at=now(), place=place[:PLACE_MAX],
                      reason=reason[:REASON_MAX] or "Downloaded",
                      details={"sha256": item.sha256, "via": "download"}, **_who(actor))
        audit.record(actor=actor, action="evidence.download", object_type="evidence_item",
                     object_id=item.id, case_id=case.id,
                     details={"number": item.number, "custody_hash": item.custody_hash})
        _commit("Another change to this item got there first; try again.")
    except BaseException:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        raise
    name = item.original_filename or f"{item.number}.bin"
    return Download(item=item, chunks=chunks, filename=name,
                    content_type=item.content_type or "application/octet-stream",
                    size=int(item.size or 0))


# --- custody ------------------------------------------------------------------------------

def transfer(*, actor: Actor, item_id: Any, to_user_id: Any = None, to_username: Any = None,
             place: Any = None, reason: Any = None) -> CustodyEvent:
    """TRANSFERRED from the current custodian to another person who may read the case."""
    item, case = _item_or_404(actor=actor, item_id=item_id, action=READ,
                              attempt="evidence.transfer")
    level = case_policy.access(actor, case)
    if not policy.can_transfer(actor, item, level):
        audit.record_now(actor=actor, action="evidence.transfer", outcome="denied",
                         object_type="evidence_item", object_id=item.id, case_id=case.id)
        raise_forbidden("Only the item's custodian, or someone who manages the case, may "
                        "transfer it.")
    _ensure_open(case)
    errors = _Errors()
    place = errors.text("place", place, max_len=PLACE_MAX)
    reason = errors.text("reason", reason, max_len=REASON_MAX, required=True)
    receiver = _receiver(errors, to_user_id, to_username)
    if receiver is not None:
        if not policy.can_receive(case_policy.access(Actor.for_user(receiver), case)):
            errors.add("to_user", "This person cannot see the case: add them to its team "
                                  "(or grant their agency access) first.")
        elif receiver.id == item.custodian_id:
            errors.add("to_user", "This person already holds the item.")
    errors.raise_if_any()
    giver = item.custodian
    event = ledger.append(
        db.session, item, kind="TRANSFERRED", at=now(), place=place, reason=reason,
        details={"from_user_id": giver.id if giver else None,
                 "from_username": giver.username if giver else None,
                 "from_name": giver.full_name if giver else None,
                 "to_user_id": receiver.id, "to_username": receiver.username,
                 "to_name": receiver.full_name}, **_who(actor))
    item.custodian_id = receiver.id
    audit.record(actor=actor, action="evidence.transfer", object_type="evidence_item",
                 object_id=item.id, case_id=case.id,
                 details={"number": item.number, "from": giver.id if giver else None,
                          "to": receiver.id, "custody_hash": event.hash})
    _commit("Another change to this item got there first; try again.")
    return event


def raise_forbidden(message: str) -> None:
    from taskforce.errors import Forbidden

    raise Forbidden(message)


def _receiver(errors: _Errors, to_user_id: Any, to_username: Any) -> User | None:
    user = None
    if to_user_id not in (None, ""):
        uid = to_user_id if isinstance(to_user_id, int) else (
            int(to_user_id) if isinstance(to_user_id, str) and to_user_id.strip().isdigit()
            else None)
        user = db.session.get(User, uid) if uid and uid < 2**31 else None
    elif isinstance(to_username, str) and to_username.strip():
        user = db.session.scalar(select(User).where(User.username == to_username.strip().lower()))
    else:
        errors.add("to_user", "Required: who receives the item.")
        return None
    if user is None or not user.active:
        errors.add("to_user", "No such active user.")
        return None
    return user


# --- verification -------------------------------------------------------------------------

@dataclass(frozen=True)
class VerifyReport:
    item_id: int
    number: str
    ok: bool
    expected_sha256: str
    actual_sha256: str | None
    expected_md5: str | None
    actual_md5: str | None
    expected_size: int
    actual_size: int | None
    problem: str | None = None

    @property
    def message(self) -> str:
        if self.ok:
            return f"{self.number}: intact, SHA-256 {self.actual_sha256}"
        return f"{self.number}: INTEGRITY FAILURE: {self.problem}"


def verify(*, actor: Actor, item_id: Any, store: EvidenceStore | None = None) -> VerifyReport:
    """Stream the stored bytes back, re-hash them, and append VERIFIED with the result
    (a failed check is recorded as well: the ledger keeps both hashes)."""
    item, case = _item_or_404(actor=actor, item_id=item_id, action=READ,
                              attempt="evidence.verify")
    if not item.is_digital:
        raise Conflict("A physical item has no stored bytes to verify.")
    expected = {"sha256": item.sha256, "md5": item.md5, "size": item.size}
    item_pk = item.id
    db.session.commit()  # no transaction stays open while the bytes stream back
    store = store or get_store()
    actual: dict[str, Any] = {"sha256": None, "md5": None, "size": None}
    problem = None
    try:
        chunks = store.open_stream(expected["sha256"])
    except ObjectMissing:
        problem = "the stored bytes are missing"
    else:
        digest = hash_chunks(chunks)
        actual = {"sha256": digest.sha256, "md5": digest.md5, "size": digest.size}
        bad = [k for k in ("sha256", "md5", "size") if actual[k] != expected[k]]
        if bad:
            problem = "; ".join(f"{k} recorded {expected[k]}, stored bytes give {actual[k]}"
                                for k in bad)
    ok = problem is None
    item, case = _item_or_404(actor=actor, item_id=item_pk, action=READ,
                              attempt="evidence.verify")
    who = _who(actor) if not policy.is_system(actor) else {
        "user_id": None, "username": actor.username, "user_name": "integrity check"}
    at = now()
    ledger.append(db.session, item, kind="VERIFIED", at=at,
                  place=f"evidence store ({store.name}) {item.storage_key}",
                  reason="Hash re-checked" if ok else "Hash re-checked: INTEGRITY FAILURE",
                  details={"ok": ok, "expected_sha256": expected["sha256"],
                           "actual_sha256": actual["sha256"], "expected_md5": expected["md5"],
                           "actual_md5": actual["md5"], "expected_size": expected["size"],
                           "actual_size": actual["size"], "problem": problem}, **who)
    item.integrity = "ok" if ok else ("missing" if actual["sha256"] is None else "mismatch")
    item.last_verified_at = at
    audit.record(actor=actor, action="evidence.verify", outcome="success" if ok else "failed",
                 object_type="evidence_item", object_id=item.id, case_id=case.id,
                 details={"number": item.number, "ok": ok, "expected_sha256": expected["sha256"],
                          "actual_sha256": actual["sha256"]})
    _commit("Another change to this item got there first; try again.")
    return VerifyReport(item_id=item.id, number=item.number, ok=ok,
                        expected_sha256=expected["sha256"], actual_sha256=actual["sha256"],
                        expected_md5=expected["md5"], actual_md5=actual["md5"],
                        expected_size=expected["size"], actual_size=actual["size"],
                        problem=problem)


def verify_ledger(*, progress=None) -> ledger.LedgerResult:
    """Every item's custody chain checked (read-only; no actor: a console command)."""
    return ledger.verify_ledger(db.session, progress=progress)


# --- the case timeline --------------------------------------------------------------------

@timeline_source("evidence")
def _evidence_timeline(case: Case, actor: Actor):
    for item in db.session.scalars(select(EvidenceItem).where(EvidenceItem.case_id == case.id)
                                   .order_by(EvidenceItem.seq)):
        where = f" at {item.collected_place}" if item.collected_place else ""
        yield TimelineEvent(at=item.collected_at, kind="evidence",
                            summary=f"Evidence collected: {item.number} "
                                    f"{item.description.splitlines()[0][:160] if item.description else ''}",
                            actor=item.collected_by, detail=f"Collected by {item.collected_by}{where}",
                            object_type="evidence_item", object_id=item.id)


__all__ = [
    "Download", "EvidencePage", "ItemView", "VerifyReport", "add_physical_item", "detect_content_type",
    "download", "evidence_page", "get_item", "ingest", "list_items", "transfer", "verify", "verify_ledger",
]
