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
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from taskforce.accounts.models import User
from taskforce.accounts.permissions import Actor
from taskforce.audit import service as audit
from taskforce.errors import Conflict, DomainError, Invalid, NotFound
from taskforce.evidence import ledger, policy, reports
from taskforce.evidence.models import (
    INTEGRITY,
    KINDS,
    SOURCES,
    STATES,
    CustodyEvent,
    CustodyTransfer,
    EvidenceCounter,
    EvidenceItem,
    LegalHold,
    Package,
    PackageGrant,
    SurvivorRelease,
)
from taskforce.evidence.reports import Redactor
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
from taskforce.investigations.policy import MANAGE, READ, WRITE
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

    def moment(self, name: str, value: Any, *, default: datetime,
               future: bool = False) -> datetime:
        """An ISO 8601 time; without a zone it is taken as UTC. Not in the future (with
        `future`: not in the past)."""
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
        if future:
            if parsed < now() - CLOCK_SKEW:
                self.add(name, "Cannot be in the past.")
        elif parsed > now() + CLOCK_SKEW:
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
           length: int | None = None, store: EvidenceStore | None = None) -> EvidenceItem:
    """Store the bytes of `stream` (hashed in the same pass) and record them as an item.
    `length`: the size the sender declared (Content-Length of a raw body), if known.

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
        stored = store.put_stream(stream, expected_sha256=expected, max_bytes=_max_bytes(),
                                  length=length)
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
                           "md5_by": stored.md5_by, "storage_key": stored.key, "backend": store_name,
                           "version_id": stored.version_id,
                           "data_key": stored.data_key,
                           "deduplicated": stored.deduplicated,
                           "filename": meta["original_filename"],
                           "content_type": item.content_type,
                           "upload_started_at": received_at.isoformat()}, **who)
    audit.record(actor=actor, action="evidence.ingest", object_type="evidence_item",
                 object_id=item.id, case_id=case.id,
                 details={"number": item.number, "sha256": stored.sha256, "size": stored.size,
                          "deduplicated": stored.deduplicated,
                          "custody_hash": item.custody_hash})
    apply_case_hold(item)  # an item added to a held case is held from its first moment
    pdf = item.content_type == "application/pdf"
    if pdf:  # shown as waiting until the extraction task has run
        from taskforce.evidence.models import EvidenceText

        db.session.add(EvidenceText(item_id=item.id, case_id=case.id, status="pending"))
    _commit("Another change to this case's evidence got there first; try again.")
    if pdf:  # an in-process (eager) job ends its own session: read the item afresh
        item_id = item.id
        _queue_text_extraction(item_id)
        item = db.session.get(EvidenceItem, item_id)
    return item


def _queue_text_extraction(item_id: int) -> None:
    """After the commit: the item stands whatever happens to the job (it shows as
    waiting, and `flask evidence extract-text` runs it again)."""
    import logging

    from taskforce.evidence import tasks
    from taskforce.jobs import dispatch

    try:
        dispatch(tasks.extract_text, (item_id,))
    except Exception:
        db.session.rollback()
        logging.getLogger(__name__).exception("evidence: text extraction of item %s not "
                                              "queued", item_id)


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
    apply_case_hold(item)  # booked into a held case: held from its first moment
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
    pending_transfer: CustodyTransfer | None = None
    legal_hold: LegalHold | None = None
    can_manage: bool = False  # release
    can_dispose: bool = False
    can_mark_survivor: bool = False
    can_unmark_survivor: bool = False
    can_release_survivor: bool = False
    receiving: bool = False  # the pending hand-over waits for the viewer

    @property
    def custodian(self) -> User | None:
        return self.item.custodian


def redactor_for(actor: Actor, case: Case) -> Redactor:
    """Survivors' identities hidden from everyone but victim specialists and the case
    lead (graph.policy.may_see_survivor): an empty redactor for them."""
    from taskforce.graph.policy import may_see_survivor

    if policy.is_system(actor) or may_see_survivor(actor, case):
        return Redactor()
    return survivor_redactor(case.id, released=False)


def list_items(*, actor: Actor, case_id: Any) -> list[EvidenceItem]:
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="evidence.list")
    items = list(db.session.scalars(select(EvidenceItem).where(EvidenceItem.case_id == case.id)
                                    .order_by(EvidenceItem.seq)))
    audit.record(actor=actor, action="evidence.list", object_type="case", object_id=case.id,
                 case_id=case.id, details={"items": len(items)})
    db.session.commit()
    return reports.redacted(items, redactor_for(actor, case))


@dataclass
class EvidencePage:
    case: Case
    items: list[EvidenceItem]
    can_add: bool
    legal_hold: LegalHold | None = None
    can_hold: bool = False
    can_build_package: bool = False
    packages: list[Package] | None = None
    # for victim specialists: the case's survivors and which are released for packages
    survivors: list[dict[str, Any]] | None = None


def evidence_page(*, actor: Actor, case_id: Any) -> EvidencePage:
    """A case's items, its legal hold, its packages, and what the actor may do (one
    audited read)."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="evidence.list")
    level = case_policy.access(actor, case)
    items = list(db.session.scalars(select(EvidenceItem).where(EvidenceItem.case_id == case.id)
                                    .order_by(EvidenceItem.seq)))
    query = select(Package).where(Package.case_id == case.id).order_by(Package.id.desc())
    if not policy.can_manage_packages(level):
        query = query.where(Package.id.in_(select(PackageGrant.package_id).where(
            PackageGrant.user_id == actor.user_id, PackageGrant.revoked_at.is_(None))))
    packages = list(db.session.scalars(query))
    audit.record(actor=actor, action="evidence.list", object_type="case", object_id=case.id,
                 case_id=case.id, details={"items": len(items)})
    db.session.commit()
    survivors = None
    if policy.can_release_survivor(actor, case):
        released = set(db.session.scalars(select(SurvivorRelease.entity_id).where(
            SurvivorRelease.case_id == case.id)))
        survivors = [{"entity_id": entity.id, "pseudonym": entity.pseudonym,
                      "name": (_names_of(ce, entity) or ["(no name)"])[0],
                      "released": entity.id in released}
                     for ce, entity in _survivor_rows(case.id)]
    return EvidencePage(case=case, items=reports.redacted(items, redactor_for(actor, case)),
                        survivors=survivors,
                        can_add=level >= WRITE and case.status != "closed",
                        legal_hold=active_legal_hold(case.id),
                        can_hold=policy.can_set_legal_hold(actor, level),
                        can_build_package=policy.can_build_package(actor, case, level),
                        packages=packages)


def get_item(*, actor: Actor, item_id: Any) -> ItemView:
    from taskforce.graph.policy import may_see_survivor

    item, case = _item_or_404(actor=actor, item_id=item_id, action=READ,
                              attempt="evidence.read")
    level = case_policy.access(actor, case)
    events = list(db.session.scalars(select(CustodyEvent).where(CustodyEvent.item_id == item.id)
                                     .order_by(CustodyEvent.seq)))
    pending = _pending_transfer(item.id)
    audit.record(actor=actor, action="evidence.read", object_type="evidence_item",
                 object_id=item.id, case_id=case.id)
    db.session.commit()
    open_case = case.status != "closed"
    sees_survivors = may_see_survivor(actor, case)
    redact = redactor_for(actor, case)
    return ItemView(item=reports.redacted(item, redact), case=case,
                    events=reports.redacted(events, redact),
                    can_transfer=policy.can_transfer(actor, item, level) and open_case,
                    can_add=level >= WRITE and open_case,
                    pending_transfer=pending, legal_hold=active_legal_hold(case.id),
                    can_manage=level >= MANAGE and open_case,
                    can_dispose=policy.can_authorise_disposal(actor, level),
                    can_mark_survivor=level >= WRITE or sees_survivors,
                    can_unmark_survivor=sees_survivors,
                    can_release_survivor=policy.can_release_survivor(actor, case),
                    receiving=pending is not None and pending.to_user_id == actor.user_id)


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
#
# Every change of who holds an item or where it stands appends one event (who, when,
# where, why) and one audit record in the same transaction. A hand-over is two steps:
# the giver asks (a CustodyTransfer, pending), the receiver accepts (TRANSFERRED is
# appended, naming both) or refuses (TRANSFER_REFUSED), or the giver withdraws it
# (TRANSFER_WITHDRAWN). Until then the giver holds it. A hand-over that did not happen
# is in the chain too: who offered the item to whom, when, and why it did not go.

_HOLDABLE = ("in_custody", "sealed")  # states in which an item can be handed on or sealed


def raise_forbidden(message: str) -> None:
    from taskforce.errors import Forbidden

    raise Forbidden(message)


def _deny(actor: Actor, action: str, item: EvidenceItem, case: Case, message: str) -> None:
    audit.record_now(actor=actor, action=action, outcome="denied",
                     object_type="evidence_item", object_id=item.id, case_id=case.id)
    raise_forbidden(message)


def _ensure_state(item: EvidenceItem, allowed: tuple[str, ...], doing: str) -> None:
    if item.state not in allowed:
        raise Conflict(f"{item.number} is {STATES[item.state].lower()}: it cannot be {doing} "
                       "now.")


def _may_handle(actor: Actor, item: EvidenceItem, case: Case) -> bool:
    return policy.can_transfer(actor, item, case_policy.access(actor, case))


def _handler_item(actor: Actor, item_id: Any, action: str) -> tuple[EvidenceItem, Case]:
    """The item, if the actor holds it or manages its case (and the case is open)."""
    item, case = _item_or_404(actor=actor, item_id=item_id, action=READ, attempt=action)
    if not _may_handle(actor, item, case):
        _deny(actor, action, item, case, "Only the item's custodian, or someone who manages "
                                         "the case, may do this.")
    _ensure_open(case)
    return item, case


def _pending_transfer(item_id: int) -> CustodyTransfer | None:
    return db.session.scalar(select(CustodyTransfer).where(
        CustodyTransfer.item_id == item_id, CustodyTransfer.status == "pending"))


def transfer(*, actor: Actor, item_id: Any, to_user_id: Any = None, to_username: Any = None,
             place: Any = None, reason: Any = None) -> CustodyTransfer:
    """Ask to hand the item to another person who may read the case. Nothing moves
    until the receiver accepts (accept_transfer appends TRANSFERRED)."""
    item, case = _handler_item(actor, item_id, "evidence.transfer")
    _ensure_state(item, _HOLDABLE, "handed on")
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
    waiting = _pending_transfer(item.id)
    if waiting is not None:
        raise Conflict(f"{item.number} is already waiting for {waiting.to_user.username} to "
                       "accept it; cancel that hand-over first.")
    request = CustodyTransfer(item_id=item.id, from_user_id=item.custodian_id,
                              to_user_id=receiver.id, requested_by_id=actor.user_id,
                              requested_at=now(), place=place, reason=reason, status="pending")
    db.session.add(request)
    db.session.flush()
    audit.record(actor=actor, action="evidence.transfer_request", object_type="evidence_item",
                 object_id=item.id, case_id=case.id,
                 details={"number": item.number, "transfer_id": request.id,
                          "from": item.custodian_id, "to": receiver.id})
    _commit("Another change to this item got there first; try again.")
    return request


def _transfer_for_receiver(actor: Actor, transfer_id: Any, action: str
                           ) -> tuple[CustodyTransfer, EvidenceItem, Case]:
    row_id = transfer_id if isinstance(transfer_id, int) else (
        int(transfer_id) if isinstance(transfer_id, str) and transfer_id.isdigit() else None)
    request = db.session.get(CustodyTransfer, row_id) if row_id and row_id < 2**31 else None
    if request is None or request.to_user_id != actor.user_id:
        audit.record_now(actor=actor, action=action, outcome="denied",
                         object_type="custody_transfer", object_id=transfer_id)
        raise NotFound("No such hand-over waiting for you.")
    item, case = _item_or_404(actor=actor, item_id=request.item_id, action=READ, attempt=action)
    if request.status != "pending":
        raise Conflict(f"This hand-over was already {request.status}.")
    return request, item, case


def _offer_details(request: CustodyTransfer) -> dict[str, Any]:
    """Who offered the item to whom, when and why (names as they are at the time)."""
    giver, receiver = request.from_user, request.to_user
    return {"transfer_id": request.id,
            "from_user_id": giver.id if giver else None,
            "from_username": giver.username if giver else None,
            "from_name": giver.full_name if giver else None,
            "to_user_id": receiver.id, "to_username": receiver.username,
            "to_name": receiver.full_name,
            "requested_by": request.requested_by.username if request.requested_by else None,
            "requested_at": request.requested_at.isoformat(),
            "offer_reason": request.reason}


def accept_transfer(*, actor: Actor, transfer_id: Any, place: Any = None,
                    note: Any = None) -> CustodyEvent:
    """The receiver takes the item: TRANSFERRED (from, to, asked by whom and why)."""
    request, item, case = _transfer_for_receiver(actor, transfer_id, "evidence.transfer_accept")
    _ensure_open(case)
    _ensure_state(item, _HOLDABLE, "handed on")
    if item.custodian_id != request.from_user_id:
        raise Conflict("The item changed hands after this hand-over was asked for; ask its "
                       "custodian to hand it over again.")
    errors = _Errors()
    place = errors.text("place", place, max_len=PLACE_MAX) or request.place
    note = errors.text("note", note, max_len=REASON_MAX)
    errors.raise_if_any()
    at = now()
    event = ledger.append(
        db.session, item, kind="TRANSFERRED", at=at, place=place, reason=request.reason,
        details={**_offer_details(request), "accepted_note": note or None}, **_who(actor))
    item.custodian_id = request.to_user.id
    request.status, request.decided_at, request.decision_note = "accepted", at, note or None
    audit.record(actor=actor, action="evidence.transfer_accept", object_type="evidence_item",
                 object_id=item.id, case_id=case.id,
                 details={"number": item.number, "transfer_id": request.id,
                          "from": request.from_user_id, "to": request.to_user_id,
                          "custody_hash": event.hash})
    _commit("Another change to this item got there first; try again.")
    return event


def refuse_transfer(*, actor: Actor, transfer_id: Any, note: Any = None) -> CustodyTransfer:
    """The receiver declines: the giver keeps the item, and the chain records
    TRANSFER_REFUSED (by the receiver; why in `reason`; the offer in its details)."""
    request, item, case = _transfer_for_receiver(actor, transfer_id, "evidence.transfer_refuse")
    errors = _Errors()
    note = errors.text("note", note, max_len=REASON_MAX, required=True)
    errors.raise_if_any()
    at = now()
    event = ledger.append(db.session, item, kind="TRANSFER_REFUSED", at=at, place=request.place,
                          reason=note, details=_offer_details(request), **_who(actor))
    request.status, request.decided_at, request.decision_note = "refused", at, note
    audit.record(actor=actor, action="evidence.transfer_refuse", object_type="evidence_item",
                 object_id=item.id, case_id=case.id,
                 details={"number": item.number, "transfer_id": request.id, "note": note[:300],
                          "custody_hash": event.hash})
    _commit("Another change to this item got there first; try again.")
    return request


def cancel_transfer(*, actor: Actor, item_id: Any, reason: Any = None) -> CustodyTransfer:
    """The giver (or a manager of the case) withdraws a hand-over not yet accepted:
    TRANSFER_WITHDRAWN (by whom, why if given; the offer in its details)."""
    item, case = _handler_item(actor, item_id, "evidence.transfer_cancel")
    errors = _Errors()
    reason = errors.text("reason", reason, max_len=REASON_MAX)
    errors.raise_if_any()
    request = _pending_transfer(item.id)
    if request is None:
        raise Conflict("No hand-over of this item is waiting.")
    at = now()
    event = ledger.append(db.session, item, kind="TRANSFER_WITHDRAWN", at=at,
                          place=request.place, reason=reason or "Hand-over withdrawn",
                          details=_offer_details(request), **_who(actor))
    request.status, request.decided_at = "cancelled", at
    request.decision_note = reason or None
    audit.record(actor=actor, action="evidence.transfer_cancel", object_type="evidence_item",
                 object_id=item.id, case_id=case.id,
                 details={"number": item.number, "transfer_id": request.id,
                          "custody_hash": event.hash})
    _commit("Another change to this item got there first; try again.")
    return request


def incoming_transfers(*, actor: Actor) -> list[CustodyTransfer]:
    """Hand-overs waiting for this person to accept or refuse (cases they may still read)."""
    rows = list(db.session.scalars(
        select(CustodyTransfer).where(CustodyTransfer.to_user_id == actor.user_id,
                                      CustodyTransfer.status == "pending")
        .order_by(CustodyTransfer.requested_at)))
    visible = [r for r in rows
               if case_policy.can_read(actor, db.session.get(Case, r.item.case_id))]
    audit.record(actor=actor, action="evidence.transfers_incoming", object_type="user",
                 object_id=actor.user_id, details={"pending": len(visible)})
    db.session.commit()
    return visible


def _lifecycle_event(actor: Actor, item: EvidenceItem, case: Case, *, kind: str, action: str,
                     place: str, reason: str, details: dict[str, Any]) -> CustodyEvent:
    event = ledger.append(db.session, item, kind=kind, at=now(), place=place, reason=reason,
                          details=details, **_who(actor))
    audit.record(actor=actor, action=action, object_type="evidence_item", object_id=item.id,
                 case_id=case.id, details={"number": item.number, "state": item.state,
                                           "custody_hash": event.hash})
    _commit("Another change to this item got there first; try again.")
    return event


def check_out(*, actor: Actor, item_id: Any, to: Any = None, place: Any = None,
              reason: Any = None, expected_return_at: Any = None) -> CustodyEvent:
    """CHECKED_OUT: the item leaves storage for a while (to a lab, to court), with where
    to, why and when it is expected back. The custodian stays answerable for it."""
    item, case = _handler_item(actor, item_id, "evidence.check_out")
    _ensure_state(item, _HOLDABLE, "checked out")
    errors = _Errors()
    to = errors.text("to", to, max_len=PLACE_MAX, required=True)
    place = errors.text("place", place, max_len=PLACE_MAX)
    reason = errors.text("reason", reason, max_len=REASON_MAX, required=True)
    expected = None
    if expected_return_at not in (None, ""):
        expected = errors.moment("expected_return_at", expected_return_at, default=now(),
                                 future=True)
    errors.raise_if_any()
    was_sealed = item.state == "sealed"
    item.state, item.checked_out_to, item.expected_return_at = "checked_out", to, expected
    return _lifecycle_event(actor, item, case, kind="CHECKED_OUT", action="evidence.check_out",
                            place=place, reason=reason,
                            details={"to": to, "was_sealed": was_sealed,
                                     "expected_return_at": expected.isoformat() if expected
                                     else None})


def check_in(*, actor: Actor, item_id: Any, place: Any = None, reason: Any = None,
             condition: Any = None) -> CustodyEvent:
    """CHECKED_IN: back from where it was checked out to."""
    item, case = _handler_item(actor, item_id, "evidence.check_in")
    _ensure_state(item, ("checked_out",), "checked in")
    errors = _Errors()
    place = errors.text("place", place, max_len=PLACE_MAX)
    reason = errors.text("reason", reason, max_len=REASON_MAX) or "Returned"
    condition = errors.text("condition", condition, max_len=REASON_MAX)
    errors.raise_if_any()
    at = now()
    details = {"from": item.checked_out_to, "condition": condition or None,
               "expected_return_at": item.expected_return_at.isoformat()
               if item.expected_return_at else None,
               "late": bool(item.expected_return_at and at > item.expected_return_at)}
    item.state, item.checked_out_to, item.expected_return_at = "in_custody", None, None
    return _lifecycle_event(actor, item, case, kind="CHECKED_IN", action="evidence.check_in",
                            place=place, reason=reason, details=details)


def seal(*, actor: Actor, item_id: Any, seal_number: Any = None, place: Any = None,
         reason: Any = None) -> CustodyEvent:
    """SEALED: put under a numbered seal (a bag, a container, a write-once disc)."""
    item, case = _handler_item(actor, item_id, "evidence.seal")
    _ensure_state(item, ("in_custody",), "sealed")
    errors = _Errors()
    seal_number = errors.text("seal_number", seal_number, max_len=NAME_MAX, required=True)
    place = errors.text("place", place, max_len=PLACE_MAX)
    reason = errors.text("reason", reason, max_len=REASON_MAX) or "Sealed"
    errors.raise_if_any()
    item.state = "sealed"
    return _lifecycle_event(actor, item, case, kind="SEALED", action="evidence.seal",
                            place=place, reason=reason, details={"seal_number": seal_number})


def release(*, actor: Actor, item_id: Any, released_to: Any = None, place: Any = None,
            reason: Any = None) -> CustodyEvent:
    """RELEASED: leaves the task force's custody for good (returned to its owner, handed
    to another authority). Only someone who manages the case may release an item."""
    item, case = _item_or_404(actor=actor, item_id=item_id, action=READ,
                              attempt="evidence.release")
    if case_policy.access(actor, case) < MANAGE:
        _deny(actor, "evidence.release", item, case,
              "Only someone who manages the case may release an item.")
    _ensure_open(case)
    _ensure_state(item, _HOLDABLE, "released")
    errors = _Errors()
    released_to = errors.text("released_to", released_to, max_len=PLACE_MAX, required=True)
    place = errors.text("place", place, max_len=PLACE_MAX)
    reason = errors.text("reason", reason, max_len=REASON_MAX, required=True)
    errors.raise_if_any()
    item.state = "released"
    return _lifecycle_event(actor, item, case, kind="RELEASED", action="evidence.release",
                            place=place, reason=reason, details={"released_to": released_to})


def dispose(*, actor: Actor, item_id: Any, method: Any = None, place: Any = None,
            reason: Any = None) -> CustodyEvent:
    """DISPOSED, on a supervisor's authority only, and never while the case is under a
    legal hold. Stored bytes are not deleted here: the store's retention keeps them
    (object lock on S3), and the record says so."""
    item, case = _item_or_404(actor=actor, item_id=item_id, action=READ,
                              attempt="evidence.dispose")
    if not policy.can_authorise_disposal(actor, case_policy.access(actor, case)):
        _deny(actor, "evidence.dispose", item, case,
              "Only a supervisor who manages the case may authorise disposal.")
    _ensure_state(item, ("in_custody", "sealed", "released"), "disposed")
    hold = active_legal_hold(case.id)
    if hold is not None:
        audit.record_now(actor=actor, action="evidence.dispose", outcome="denied",
                         object_type="evidence_item", object_id=item.id, case_id=case.id,
                         details={"reason": "legal hold", "hold_id": hold.id})
        raise Conflict(f"Case {case.number} is under a legal hold (since "
                       f"{hold.set_at:%Y-%m-%d}): nothing of it may be disposed of until a "
                       "supervisor clears the hold.")
    errors = _Errors()
    method = errors.text("method", method, max_len=PLACE_MAX, required=True)
    place = errors.text("place", place, max_len=PLACE_MAX)
    reason = errors.text("reason", reason, max_len=REASON_MAX, required=True)
    errors.raise_if_any()
    item.state = "disposed"
    details: dict[str, Any] = {"method": method, "authorised_by": actor.username}
    if item.is_digital:
        details["stored_bytes"] = "kept under the evidence store's retention"
    return _lifecycle_event(actor, item, case, kind="DISPOSED", action="evidence.dispose",
                            place=place, reason=reason, details=details)


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


# --- legal hold ---------------------------------------------------------------------------

def active_legal_hold(case_id: int) -> LegalHold | None:
    return db.session.scalar(select(LegalHold).where(LegalHold.case_id == case_id,
                                                     LegalHold.cleared_at.is_(None)))


def _case_digests(case_id: int) -> list[str]:
    return sorted(set(db.session.scalars(select(EvidenceItem.sha256).where(
        EvidenceItem.case_id == case_id, EvidenceItem.kind == "digital"))))


def _supervisor_case(actor: Actor, case_id: Any, attempt: str) -> Case:
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt=attempt)
    if not policy.can_set_legal_hold(actor, case_policy.access(actor, case)):
        audit.record_now(actor=actor, action=attempt, outcome="denied", object_type="case",
                         object_id=case.id, case_id=case.id)
        raise_forbidden("Only a supervisor who manages the case may set or clear a legal hold.")
    return case


def set_legal_hold(*, actor: Actor, case_id: Any, reason: Any = None,
                   store: EvidenceStore | None = None) -> LegalHold:
    """Hold every item of the case: disposal refused; on S3 an object legal hold on each
    stored object (the local folder records it and the app enforces it)."""
    case = _supervisor_case(actor, case_id, "evidence.legal_hold_set")
    errors = _Errors()
    reason = errors.text("reason", reason, max_len=REASON_MAX, required=True)
    errors.raise_if_any()
    if active_legal_hold(case.id) is not None:
        raise Conflict(f"Case {case.number} is already under a legal hold.")
    store = store or get_store()
    digests = _case_digests(case.id)
    for digest in digests:  # the store first: a failure leaves no hold recorded
        store.set_legal_hold(digest, True)
    at = now()
    hold = LegalHold(case_id=case.id, reason=reason, set_by_id=actor.user_id, set_at=at)
    db.session.add(hold)
    db.session.flush()
    # Each item's chain says it was held from this moment (its ledger stands alone in court).
    who = _who(actor)
    items = _case_items(case.id)
    for item in items:
        ledger.append(db.session, item, kind="LEGAL_HOLD_SET", at=at, reason=reason,
                      details={"hold_id": hold.id, "case": case.number,
                               "store_hold": item.is_digital, "backend": store.name
                               if item.is_digital else None}, **who)
    audit.record(actor=actor, action="evidence.legal_hold_set", object_type="case",
                 object_id=case.id, case_id=case.id,
                 details={"hold_id": hold.id, "objects": len(digests), "backend": store.name,
                          "items": len(items)})
    _commit("Another change to this case got there first; try again.")
    return hold


def clear_legal_hold(*, actor: Actor, case_id: Any, reason: Any = None,
                     store: EvidenceStore | None = None) -> LegalHold:
    case = _supervisor_case(actor, case_id, "evidence.legal_hold_clear")
    errors = _Errors()
    reason = errors.text("reason", reason, max_len=REASON_MAX, required=True)
    errors.raise_if_any()
    hold = active_legal_hold(case.id)
    if hold is None:
        raise Conflict(f"Case {case.number} is not under a legal hold.")
    store = store or get_store()
    # The same bytes may be evidence in another case that is still held: keep those.
    held_elsewhere = set(db.session.scalars(
        select(EvidenceItem.sha256).join(LegalHold, LegalHold.case_id == EvidenceItem.case_id)
        .where(LegalHold.cleared_at.is_(None), LegalHold.case_id != case.id,
               EvidenceItem.kind == "digital")))
    released = [d for d in _case_digests(case.id) if d not in held_elsewhere]
    for digest in released:
        store.set_legal_hold(digest, False)
    at = now()
    hold.cleared_at, hold.cleared_by_id, hold.clear_reason = at, actor.user_id, reason
    who = _who(actor)
    items = _case_items(case.id)
    for item in items:
        ledger.append(db.session, item, kind="LEGAL_HOLD_CLEARED", at=at, reason=reason,
                      details={"hold_id": hold.id, "case": case.number,
                               "held_since": hold.set_at.isoformat(),
                               "set_by": hold.set_by.username if hold.set_by else None,
                               "kept_for_other_case": item.is_digital
                               and item.sha256 in held_elsewhere}, **who)
    audit.record(actor=actor, action="evidence.legal_hold_clear", object_type="case",
                 object_id=case.id, case_id=case.id,
                 details={"hold_id": hold.id, "objects": len(released), "items": len(items),
                          "kept_for_other_cases": len(set(_case_digests(case.id))
                                                      & held_elsewhere)})
    _commit("Another change to this case got there first; try again.")
    return hold


def _case_items(case_id: int) -> list[EvidenceItem]:
    return list(db.session.scalars(select(EvidenceItem).where(EvidenceItem.case_id == case_id)
                                   .order_by(EvidenceItem.seq)))


def apply_case_hold(item: EvidenceItem, store: EvidenceStore | None = None) -> bool:
    """Put a new item under its case's legal hold, if there is one (for ingest and
    physical intake): the store's hold on its bytes, and LEGAL_HOLD_SET in its chain
    in the caller's transaction, by the person who added it."""
    hold = active_legal_hold(item.case_id)
    if hold is None:
        return False
    backend = None
    if item.is_digital:
        store = store or get_store()
        store.set_legal_hold(item.sha256, True)
        backend = store.name
    case = db.session.get(Case, item.case_id)
    adder = _user(item.created_by_id)
    ledger.append(db.session, item, kind="LEGAL_HOLD_SET", at=now(), reason=hold.reason,
                  user_id=item.created_by_id, username=adder.username if adder else None,
                  user_name=adder.full_name if adder else None,
                  details={"hold_id": hold.id, "case": case.number if case else None,
                           "added_under_hold": True, "held_since": hold.set_at.isoformat(),
                           "store_hold": item.is_digital, "backend": backend})
    return True


# --- survivor protection ------------------------------------------------------------------

def flag_survivor_item(*, actor: Actor, item_id: Any, identifies: Any = True,
                       reason: Any = None) -> EvidenceItem:
    """Mark an item as identifying a survivor (withheld from packages until a victim
    specialist releases it). Investigators on the case may mark; only those who may see
    survivor identities may unmark."""
    from taskforce.graph.policy import may_see_survivor

    item, case = _item_or_404(actor=actor, item_id=item_id, action=READ,
                              attempt="evidence.survivor_flag")
    level = case_policy.access(actor, case)
    identifies = identifies in (True, "1", "true", "on", "yes", 1)
    allowed = may_see_survivor(actor, case) or (identifies and level >= WRITE)
    if not allowed:
        _deny(actor, "evidence.survivor_flag", item, case,
              "Only the case team may mark an item, and only a victim specialist or the "
              "case lead may unmark it.")
    errors = _Errors()
    reason = errors.text("reason", reason, max_len=REASON_MAX)
    errors.raise_if_any()
    item.identifies_survivor = identifies
    item.survivor_flagged_by_id = actor.user_id if identifies else None
    item.survivor_released_at = item.survivor_released_by_id = None
    audit.record(actor=actor, action="evidence.survivor_flag", object_type="evidence_item",
                 object_id=item.id, case_id=case.id,
                 details={"number": item.number, "identifies_survivor": identifies,
                          "reason": reason[:300]})
    _commit("Another change to this item got there first; try again.")
    return item


def _victim_specialist_case(actor: Actor, case: Case, attempt: str) -> None:
    if not policy.can_release_survivor(actor, case):
        audit.record_now(actor=actor, action=attempt, outcome="denied", object_type="case",
                         object_id=case.id, case_id=case.id)
        raise_forbidden("Only a victim specialist on the case may release a survivor's "
                        "identity.")


def release_survivor_item(*, actor: Actor, item_id: Any, reason: Any = None) -> EvidenceItem:
    """A victim specialist lets a survivor-identifying item go into packages."""
    item, case = _item_or_404(actor=actor, item_id=item_id, action=READ,
                              attempt="evidence.survivor_release_item")
    _victim_specialist_case(actor, case, "evidence.survivor_release_item")
    if not item.identifies_survivor:
        raise Conflict(f"{item.number} is not marked as identifying a survivor.")
    errors = _Errors()
    reason = errors.text("reason", reason, max_len=REASON_MAX, required=True)
    errors.raise_if_any()
    item.survivor_released_at, item.survivor_released_by_id = now(), actor.user_id
    audit.record(actor=actor, action="evidence.survivor_release_item",
                 object_type="evidence_item", object_id=item.id, case_id=case.id,
                 details={"number": item.number, "reason": reason[:300]})
    _commit("Another change to this item got there first; try again.")
    return item


def release_survivor_identity(*, actor: Actor, case_id: Any, entity_id: Any,
                              reason: Any = None) -> SurvivorRelease:
    """A victim specialist releases one survivor's name for this case's packages."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ,
                           attempt="evidence.survivor_release")
    _victim_specialist_case(actor, case, "evidence.survivor_release")
    errors = _Errors()
    reason = errors.text("reason", reason, max_len=REASON_MAX, required=True)
    survivors = {e.id: e for e in case_survivors(case.id)}
    eid = entity_id if isinstance(entity_id, int) else (
        int(entity_id) if isinstance(entity_id, str) and entity_id.isdigit() else None)
    if eid not in survivors:
        errors.add("entity_id", "Not a survivor in this case.")
    errors.raise_if_any()
    existing = db.session.scalar(select(SurvivorRelease).where(
        SurvivorRelease.case_id == case.id, SurvivorRelease.entity_id == eid))
    if existing is not None:
        raise Conflict("This survivor's identity is already released for this case.")
    row = SurvivorRelease(case_id=case.id, entity_id=eid, reason=reason,
                          released_by_id=actor.user_id, released_at=now())
    db.session.add(row)
    audit.record(actor=actor, action="evidence.survivor_release", object_type="entity",
                 object_id=eid, case_id=case.id, details={"reason": reason[:300]})
    _commit("Another change to this case got there first; try again.")
    return row


def _survivor_rows(case_id: int) -> list:
    """(CaseEntity, Entity) for the case's persons in the victim/survivor role (or
    carrying a survivor pseudonym)."""
    from taskforce.graph.models import SURVIVOR_ROLE, CaseEntity, Entity

    return list(db.session.execute(
        select(CaseEntity, Entity).join(Entity, CaseEntity.entity_id == Entity.id)
        .where(CaseEntity.case_id == case_id,
               (CaseEntity.role == SURVIVOR_ROLE) | Entity.pseudonym.is_not(None))
        .order_by(Entity.id)).all())


def case_survivors(case_id: int) -> list:
    return [entity for _ce, entity in _survivor_rows(case_id)]


def _names_of(*holders: Any) -> list[str]:
    names: list[str] = []
    for holder in holders:  # the case's view of the person and the entity itself
        label = getattr(holder, "label", None)
        props = getattr(holder, "props", None) or {}
        for value in (label, *(props.get("names") or []), *(props.get("aliases") or [])):
            if isinstance(value, str) and value.strip():
                names.append(value)
    return names


def survivor_redactor(case_id: int, *, released: bool) -> Redactor:
    """What to hide in this case's generated documents: every survivor's names, aliases
    and identifiers, each replaced by the survivor's pseudonym. With `released`,
    survivors a victim specialist released for this case are shown as entered."""
    released_ids = set(db.session.scalars(select(SurvivorRelease.entity_id).where(
        SurvivorRelease.case_id == case_id))) if released else set()
    redactor = Redactor()
    for case_entity, entity in _survivor_rows(case_id):
        if entity.id in released_ids:
            continue
        idents = [v for i in entity.identifiers for v in (i.display, i.value) if v]
        redactor.add(entity.pseudonym or f"Survivor-{entity.id}",
                     _names_of(case_entity, entity), idents)
    return redactor


# --- custody reports ----------------------------------------------------------------------

def _events_of(item_id: int) -> list[CustodyEvent]:
    return list(db.session.scalars(select(CustodyEvent).where(CustodyEvent.item_id == item_id)
                                   .order_by(CustodyEvent.seq)))


def _report_item(item: EvidenceItem, events: list[CustodyEvent], redact: Redactor
                 ) -> reports.ReportItem:
    import json as _json

    custodian = item.custodian
    return reports.ReportItem(
        number=item.number, description=redact(item.description), kind=KINDS[item.kind],
        source=SOURCES[item.source], collected_by=redact(item.collected_by),
        collected_at=item.collected_at, collected_place=redact(item.collected_place),
        size=item.size, sha256=item.sha256, md5=item.md5, content_type=item.content_type,
        filename=redact(item.original_filename), state=STATES[item.state],
        custodian=f"{custodian.full_name} ({custodian.username})" if custodian else "-",
        storage_location=redact(item.storage_location), integrity=INTEGRITY[item.integrity],
        events=[reports.ReportEvent(
            seq=e.seq, kind=e.kind, at=e.at,
            who=redact(f"{e.user_name or ''}" + (f" ({e.username})" if e.username and
                                                  e.username != e.user_name else "")),
            place=redact(e.place), reason=redact(e.reason),
            details=redact.deep(_json.loads(e.details)) if e.details else None,
            prev_hash=e.prev_hash, hash=e.hash) for e in events])


@dataclass
class Report:
    filename: str
    data: bytes


def _chain_ok(items: list[EvidenceItem]) -> bool:
    for item in items:
        row = {c.name: getattr(item, c.name) for c in EvidenceItem.__table__.columns}
        events = [{c.name: getattr(e, c.name) for c in CustodyEvent.__table__.columns}
                  for e in _events_of(item.id)]
        if ledger.verify_item_chain(row, events)[1] is not None:
            return False
    return True


def _report(actor: Actor, case: Case, items: list[EvidenceItem], *, action: str,
            object_type: str, object_id: int, place: str) -> Report:
    """ACCESSED on every item the report covers, one audit record, then the PDF (with
    survivors' identities only for those who may see them)."""
    from taskforce.graph.policy import may_see_survivor

    who = _who(actor)
    for item in items:
        ledger.append(db.session, item, kind="ACCESSED", at=now(), place=place,
                      reason="Custody report generated", details={"via": "custody report"},
                      **who)
    audit.record(actor=actor, action=action, object_type=object_type, object_id=object_id,
                 case_id=case.id, details={"items": [i.number for i in items][:200]})
    _commit("Another change to this evidence got there first; try again.")
    redact = Redactor() if may_see_survivor(actor, case) else survivor_redactor(case.id,
                                                                                released=False)
    data = reports.custody_report(
        case_number=case.number, case_title=redact(case.title),
        items=[_report_item(i, _events_of(i.id), redact) for i in items],
        generated_by=f"{who['user_name']} ({actor.username})", generated_at=now(),
        ledger_ok=_chain_ok(items),
        note="Survivor identities are shown as pseudonyms." if redact.active else "")
    return Report(filename=f"custody-report-{items[0].number if object_type == 'evidence_item' else case.number}.pdf",
                  data=data)


def item_custody_report(*, actor: Actor, item_id: Any, place: str = "") -> Report:
    item, case = _item_or_404(actor=actor, item_id=item_id, action=READ,
                              attempt="evidence.custody_report")
    return _report(actor, case, [item], action="evidence.custody_report",
                   object_type="evidence_item", object_id=item.id, place=place)


def case_custody_report(*, actor: Actor, case_id: Any, place: str = "") -> Report:
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ,
                           attempt="evidence.custody_report")
    items = list(db.session.scalars(select(EvidenceItem).where(EvidenceItem.case_id == case.id)
                                    .order_by(EvidenceItem.seq)))
    if not items:
        raise Conflict(f"Case {case.number} has no evidence to report on yet.")
    return _report(actor, case, items, action="evidence.custody_report", object_type="case",
                   object_id=case.id, place=place)


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
    redact = redactor_for(actor, case)
    for item in reports.redacted(list(db.session.scalars(
            select(EvidenceItem).where(EvidenceItem.case_id == case.id)
            .order_by(EvidenceItem.seq))), redact):
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


# --- integrity sweep and its alerts (storage / sweep / text helper) ----------------------

@dataclass(frozen=True)
class SweepCheck:
    item_id: int
    number: str
    ok: bool
    problem: str | None
    alerted: list[int]  # the ids of the alerts raised (one per person told)


def record_sweep_check(*, actor: Actor, item_id: int, actual_sha256: str | None,
                       actual_size: int | None, store_name: str) -> SweepCheck:
    """One item's sweep result (see record_sweep_checks)."""
    return record_sweep_checks(actor=actor, results=[(item_id, actual_sha256, actual_size)],
                               store_name=store_name)[0]


def record_sweep_checks(*, actor: Actor, results: list[tuple[int, str | None, int | None]],
                        store_name: str) -> list[SweepCheck]:
    """The sweep re-hashed these items' stored bytes: (item id, SHA-256 or None if the
    bytes are missing, size). The MD5 is not re-computed: the SHA-256 decides.

    Each item gets VERIFIED with both hashes. On a mismatch or missing bytes an
    IntegrityAlert goes to the case lead and the lead agency's supervisors (once per
    distinct finding) and the failure has an audit record of its own; the intact
    items of the batch share one audit record naming them all. One transaction, the
    emails included (queued in the mail outbox, sent after the commit); they hold
    no identifiers."""
    from taskforce.evidence.models import IntegrityAlert

    done: list[tuple[int, str, bool, str | None, list[IntegrityAlert]]] = []
    alerts: list[IntegrityAlert] = []
    intact: list[int] = []
    for item_id, actual_sha256, actual_size in results:
        item = db.session.get(EvidenceItem, item_id)
        if item is None or not item.is_digital:
            continue  # removed while its bytes streamed
        problem = None
        if actual_sha256 is None:
            problem = "the stored bytes are missing"
        elif actual_sha256 != item.sha256 or actual_size != item.size:
            problem = "; ".join(
                f"{name} recorded {want}, stored bytes give {got}"
                for name, want, got in (("sha256", item.sha256, actual_sha256),
                                        ("size", item.size, actual_size)) if want != got)
        ok = problem is None
        at = now()
        ledger.append(db.session, item, kind="VERIFIED", at=at,
                      place=f"evidence store ({store_name}) {item.storage_key}",
                      reason="Integrity sweep: hash re-checked" if ok
                      else "Integrity sweep: INTEGRITY FAILURE",
                      details={"ok": ok, "expected_sha256": item.sha256,
                               "actual_sha256": actual_sha256, "expected_md5": item.md5,
                               "actual_md5": None, "expected_size": item.size,
                               "actual_size": actual_size, "problem": problem, "via": "sweep"},
                      user_id=None, username=actor.username, user_name="integrity sweep")
        item.integrity = "ok" if ok else ("missing" if actual_sha256 is None else "mismatch")
        item.last_verified_at = at
        raised: list[IntegrityAlert] = []
        if ok:
            intact.append(item.id)
        else:
            case = db.session.get(Case, item.case_id)
            seen = db.session.scalar(select(func.count()).select_from(IntegrityAlert).where(
                IntegrityAlert.item_id == item.id,
                IntegrityAlert.actual_sha256.is_(None) if actual_sha256 is None
                else IntegrityAlert.actual_sha256 == actual_sha256))
            if not seen:
                for user in _integrity_recipients(case):
                    alert = IntegrityAlert(item_id=item.id, case_id=case.id, user_id=user.id,
                                           problem=problem, expected_sha256=item.sha256,
                                           actual_sha256=actual_sha256, detected_at=at)
                    db.session.add(alert)
                    raised.append(alert)
            audit.record(actor=actor, action="evidence.sweep", outcome="failed",
                         object_type="evidence_item", object_id=item.id, case_id=case.id,
                         details={"number": item.number, "ok": False,
                                  "expected_sha256": item.sha256,
                                  "actual_sha256": actual_sha256, "alerts": len(raised)})
            alerts += raised
        done.append((item.id, item.number, ok, problem, raised))
    if intact:
        audit.record(actor=actor, action="evidence.sweep", object_type="evidence_item",
                     object_id=intact[0] if len(intact) == 1 else None,
                     details={"ok": True, "items": intact})
    db.session.flush()  # the alerts get their ids
    checks = [SweepCheck(item_id=item_id, number=number, ok=ok, problem=problem,
                         alerted=[a.id for a in raised])
              for item_id, number, ok, problem, raised in done]
    users = [a.user for a in alerts]
    if users:
        _send_integrity_notices(users)
    _commit("Another change to these items got there first; the next sweep checks them.")
    return checks


def _integrity_recipients(case: Case) -> list[User]:
    """The case lead and the active supervisors of the case's lead agency."""
    from taskforce.accounts.models import UserRole

    people = {case.lead_investigator_id} if case.lead_investigator_id else set()
    people |= set(db.session.scalars(
        select(User.id).join(UserRole, UserRole.user_id == User.id)
        .where(User.agency_id == case.agency_id, User.active.is_(True),
               UserRole.role == "supervisor")))
    users = [db.session.get(User, uid) for uid in sorted(people)]
    return [u for u in users if u is not None and u.active]


def _send_integrity_notices(users: list[User]) -> None:
    """One email per person, no case, item, hash or name in it: sign in to see. Queued
    in the alerts' transaction (mail.queue): it exists if and only if they commit."""
    from taskforce import mail

    base = (current_app.config.get("BASE_URL") or "http://localhost:5000").rstrip("/")
    body = ("The evidence integrity sweep found stored evidence whose bytes no longer match "
            "their recorded SHA-256 (or are missing). An alert is waiting for you.\n\n"
            f"Sign in to see it: {base}/evidence/alerts\n\n"
            "This message holds no case or evidence details, by design.\n")
    for address in sorted({u.email.lower() for u in users if u.email}):
        mail.queue([address], "Evidence integrity alert", body, about="integrity_alert")


def integrity_alerts(*, actor: Actor, unread_only: bool = False) -> list[Any]:
    """The actor's own integrity alerts, newest first (reading one is audited)."""
    from taskforce.evidence.models import IntegrityAlert

    query = select(IntegrityAlert).where(IntegrityAlert.user_id == actor.user_id)
    if unread_only:
        query = query.where(IntegrityAlert.read_at.is_(None))
    alerts = list(db.session.scalars(query.order_by(IntegrityAlert.detected_at.desc(),
                                                    IntegrityAlert.id.desc()).limit(500)))
    audit.record(actor=actor, action="evidence.integrity_alerts", object_type="user",
                 object_id=actor.user_id, details={"alerts": len(alerts)})
    for alert in alerts:
        alert.new = alert.read_at is None  # shown as new this once (not a column)
        if alert.new:
            alert.read_at = now()
    db.session.commit()
    return alerts


# --- text from PDFs and suggested entities (storage / sweep / text helper) ---------------

def record_text(*, item_id: int, extracted: Any) -> None:
    """Keep what text extraction made of an item (an extraction.Extracted): its pages,
    page count and metadata, or why no text was extracted; and the identifiers found
    in the text as OPEN suggestions. A console/task function (the system acts)."""
    import json as _json

    from taskforce.evidence.extraction import find_identifiers
    from taskforce.evidence.models import EntitySuggestion, EvidencePage, EvidenceText

    item = db.session.get(EvidenceItem, item_id)
    if item is None:
        raise NotFound(_ITEM_NOT_FOUND)
    text = db.session.get(EvidenceText, item.id) or EvidenceText(item_id=item.id,
                                                                  case_id=item.case_id)
    db.session.add(text)
    db.session.execute(EvidencePage.__table__.delete().where(EvidencePage.item_id == item.id))
    text.extracted_at = now()
    text.page_count = extracted.page_count
    found = []
    if extracted.ok:
        text.status, text.reason = "extracted", (
            "only part of the text was kept (size limits)" if extracted.truncated else None)
        text.doc_metadata = _json.dumps(extracted.metadata, sort_keys=True)
        db.session.add_all(EvidencePage(item_id=item.id, case_id=item.case_id, page_no=n,
                                        text=page) for n, page in enumerate(extracted.pages, 1))
        known = set(db.session.execute(select(EntitySuggestion.kind, EntitySuggestion.value)
                                       .where(EntitySuggestion.item_id == item.id)).all())
        found = [f for f in find_identifiers(extracted.pages) if (f.kind, f.value) not in known]
        db.session.add_all(EntitySuggestion(item_id=item.id, case_id=item.case_id, kind=f.kind,
                                            value=f.value, found_as=f.found_as,
                                            page_no=f.page_no, context=f.context)
                           for f in found)
    else:
        text.status, text.reason, text.doc_metadata = "not_extracted", extracted.reason, None
    audit.record(actor=Actor.system("text-extraction"), action="evidence.extract_text",
                 outcome="success" if extracted.ok else "failed", object_type="evidence_item",
                 object_id=item.id, case_id=item.case_id,
                 details={"pages": extracted.page_count, "suggestions": len(found),
                          "reason": None if extracted.ok else extracted.reason})
    db.session.commit()


@dataclass
class TextHit:
    item: EvidenceItem
    page_no: int
    snippet: str


SEARCH_MAX = 200


def search_text(*, actor: Actor, case_id: Any, query: Any, limit: int = 50) -> list[TextHit]:
    """Pages of the case's items whose text holds every word of `query` (case-blind),
    with a snippet around the first. Needs READ on the case; audited."""
    from taskforce.evidence.models import EvidencePage

    case = get_case_or_404(actor=actor, case_id=case_id, action=READ,
                           attempt="evidence.search_text")
    errors = _Errors()
    words = errors.text("q", query, max_len=SEARCH_MAX, required=True).split()[:10]
    errors.raise_if_any()
    stmt = select(EvidencePage, EvidenceItem).join(
        EvidenceItem, EvidenceItem.id == EvidencePage.item_id).where(
        EvidencePage.case_id == case.id)
    for word in words:
        escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(EvidencePage.text.ilike(f"%{escaped}%", escape="\\"))
    rows = db.session.execute(stmt.order_by(EvidenceItem.seq, EvidencePage.page_no)
                              .limit(max(1, min(int(limit), 200)))).all()
    hits = []
    for page, item in rows:
        at = page.text.lower().find(words[0].lower())
        start = max(0, at - 80)
        snippet = " ".join(page.text[start:at + len(words[0]) + 80].split())
        hits.append(TextHit(item=item, page_no=page.page_no, snippet=snippet))
    audit.record(actor=actor, action="evidence.search_text", object_type="case",
                 object_id=case.id, case_id=case.id,
                 details={"words": len(words), "hits": len(hits)})
    db.session.commit()
    return hits


@dataclass
class ItemText:
    item: EvidenceItem
    text: Any  # EvidenceText or None
    pages: list[Any]
    suggestions: list[Any]
    can_decide: bool


def item_text(*, actor: Actor, item_id: Any) -> ItemText:
    """An item's extracted text, its status, and its suggested entities (READ; audited)."""
    from taskforce.evidence.models import EntitySuggestion, EvidencePage, EvidenceText

    item, case = _item_or_404(actor=actor, item_id=item_id, action=READ,
                              attempt="evidence.read_text")
    text = db.session.get(EvidenceText, item.id)
    pages = list(db.session.scalars(select(EvidencePage).where(EvidencePage.item_id == item.id)
                                    .order_by(EvidencePage.page_no)))
    suggestions = list(db.session.scalars(
        select(EntitySuggestion).where(EntitySuggestion.item_id == item.id)
        .order_by(EntitySuggestion.page_no, EntitySuggestion.kind, EntitySuggestion.value)))
    can_decide = case_policy.access(actor, case) >= WRITE and case.status != "closed"
    audit.record(actor=actor, action="evidence.read_text", object_type="evidence_item",
                 object_id=item.id, case_id=case.id)
    db.session.commit()
    return ItemText(item=item, text=text, pages=pages, suggestions=suggestions,
                    can_decide=can_decide)


_SUGGESTED_ENTITY = {"phone": "phone", "email": "email", "crypto_wallet": "crypto_wallet",
                     "url": "ad", "ad": "ad"}


def decide_suggestion(*, actor: Actor, suggestion_id: Any, accept: bool,
                      platform: Any = None) -> Any:
    """A person accepts a suggested entity (added to the case through the graph
    service, noting the evidence item and page it came from) or dismisses it.
    Needs WRITE on the case. An ad id needs its platform to be accepted."""
    from taskforce.evidence.models import EntitySuggestion
    from taskforce.graph import service as graph

    sid = suggestion_id if isinstance(suggestion_id, int) else (
        int(suggestion_id) if isinstance(suggestion_id, str) and suggestion_id.isdigit()
        else None)
    suggestion = db.session.get(EntitySuggestion, sid) if sid and sid < 2**31 else None
    if suggestion is None:
        raise NotFound("No such suggestion, or it is not shared with you.")
    item, case = _item_or_404(actor=actor, item_id=suggestion.item_id, action=WRITE,
                              attempt="evidence.decide_suggestion")
    if suggestion.status != "open":
        raise Conflict(f"This suggestion was already {suggestion.status}.")
    entity_id = None
    if accept:
        ident: dict[str, Any] = {"kind": suggestion.kind, "value": suggestion.value}
        if suggestion.kind == "ad":
            if not isinstance(platform, str) or not platform.strip():
                raise Invalid("Name the site the ad is on to add it.",
                              fields={"platform": ["Required for an ad id."]})
            ident["value"] = f"{platform.strip()}:{suggestion.value}"
        note = (f"Found in evidence item {item.number}, page {suggestion.page_no} "
                f"(suggested from its text, accepted by {actor.username}).")
        entity = graph.add_entity(actor=actor, case_id=case.id,
                                  kind=_SUGGESTED_ENTITY[suggestion.kind],
                                  identifiers=[ident], props={"notes": note})
        entity_id = entity.id
        suggestion = db.session.get(EntitySuggestion, sid)
        item = db.session.get(EvidenceItem, suggestion.item_id)
        if suggestion.status != "open":
            raise Conflict(f"This suggestion was already {suggestion.status}.")
    suggestion.status = "accepted" if accept else "dismissed"
    suggestion.decided_by_id = actor.user_id
    suggestion.decided_at = now()
    suggestion.entity_id = entity_id
    audit.record(actor=actor, action="evidence.accept_suggestion" if accept
                 else "evidence.dismiss_suggestion", object_type="evidence_item",
                 object_id=item.id, case_id=item.case_id,
                 details={"suggestion_id": suggestion.id, "kind": suggestion.kind,
                          "entity_id": entity_id, "provenance": f"evidence {item.number} "
                                                                f"p.{suggestion.page_no}"})
    _commit("Another decision on this suggestion got there first.")
    return suggestion


# --- storage location and printable labels (storage location / label helper) ------------

_MOVABLE = ("in_custody", "sealed")  # checked out, released or disposed: not on our shelves
LABEL_DESCRIPTION_WITHHELD = "Identifies a survivor: description withheld (see the item page)"


def move_item(*, actor: Actor, item_id: Any, storage_location: Any = None, reason: Any = None,
              place: Any = None) -> CustodyEvent:
    """A physical item moved to another storage location (another room, locker, shelf).

    The custodian or someone who manages the case moves it; the item keeps its
    custodian. It goes into its chain as MOVED (who, when, why; where from and where
    to in its details; `place` is the new location unless said otherwise)."""
    item, case = _handler_item(actor, item_id, "evidence.move")
    if item.is_digital:
        raise Conflict("A digital file is kept in the evidence store: it has no storage "
                       "location to change.")
    _ensure_state(item, _MOVABLE, "moved")
    errors = _Errors()
    location = errors.text("storage_location", storage_location, max_len=PLACE_MAX,
                           required=True)
    reason = errors.text("reason", reason, max_len=REASON_MAX, required=True)
    place = errors.text("place", place, max_len=PLACE_MAX)
    if location and location == (item.storage_location or ""):
        errors.add("storage_location", "The item is already kept there.")
    errors.raise_if_any()
    before = item.storage_location
    item.storage_location = location
    event = ledger.append(db.session, item, kind="MOVED", at=now(), place=place or location,
                          reason=reason, details={"from_location": before,
                                                  "to_location": location},
                          **_who(actor))
    audit.record(actor=actor, action="evidence.move", object_type="evidence_item",
                 object_id=item.id, case_id=case.id,
                 details={"number": item.number, "custody_hash": event.hash})
    _commit("Another change to this item got there first; try again.")
    return event


def item_url(item_id: int) -> str:
    """The item's page as printed on its label: BASE_URL (never the request's Host
    header, which a client chooses) and the page's route."""
    base = (current_app.config.get("BASE_URL") or "http://localhost:5000").rstrip("/")
    path = current_app.url_map.bind("localhost").build("evidence.item", {"item_id": item_id})
    return base + path


def item_qr_svg(item_id: int, *, scale: int = 3) -> str:
    """The item's QR code (its page address, nothing else) as an inline SVG element."""
    return reports.label_qr(item_url(item_id)).svg_inline(
        scale=scale, border=4, title="QR code of this item's page", svgclass="evidence-qr",
        lineclass=None)


def item_label(*, actor: Actor, item_id: Any, place: str = "") -> Report:
    """The item's printable label (PDF), with an audit record (printing a label is not a
    custody event: the item itself does not move).

    A label is stuck on a bag that anyone in the property room reads, so it never
    carries a survivor's identity, whoever prints it: every text passes the survivor
    redactor (as for those without need to know), and an item marked as identifying a
    survivor shows no description at all."""
    item, case = _item_or_404(actor=actor, item_id=item_id, action=READ,
                              attempt="evidence.label")
    redact = survivor_redactor(case.id, released=False)
    description = (LABEL_DESCRIPTION_WITHHELD if item.identifies_survivor
                   else redact(item.description))
    label = reports.LabelItem(
        case_number=case.number, number=item.number, kind=KINDS[item.kind],
        description=description, collected_by=redact(item.collected_by),
        collected_at=item.collected_at,
        storage_location=None if item.is_digital else redact(item.storage_location),
        sha256=item.sha256 if item.is_digital else None, url=item_url(item.id))
    data = reports.evidence_label(label)
    audit.record(actor=actor, action="evidence.label", object_type="evidence_item",
                 object_id=item.id, case_id=case.id,
                 details={"number": item.number, "place": place[:PLACE_MAX] or None,
                          "redacted": redact.hits > 0 or item.identifies_survivor})
    db.session.commit()
    return Report(filename=f"label-{item.number}.pdf", data=data)
