"""Prosecutor packages: the ZIP itself, Bates numbers, the signed manifest, and the
service functions that ask for, build, share and download packages.

The first half is pure work on files and bytes: `build_package` (the job)
loads and redacts everything, then calls `write_package` with plain values.
The second half follows service.py's rules (keyword-only arguments, the actor
passed in, the case reached through `get_case_or_404`, custody events and the
audit record in the change's transaction); it lives here to keep service.py
to the item and its custody. The ZIP is
written to a file as it goes (item bytes streamed from the store straight
into it), never held in memory. Layout:

    manifest.json              what is in the package, with every file's SHA-256
    manifest.sig               Ed25519 signature of manifest.json's exact bytes (base64)
    signing-key.pub.pem        the task force's public key (its fingerprint is printed
                               on the certification and in the manifest)
    manifest.csv               the items, one a row, for a spreadsheet
    custody-report.pdf         every included item's chain of custody (Bates-stamped)
    items/<number>/<file>      each item's bytes exactly as collected (hash-verifiable)
    bates/<number>.pdf         a Bates-stamped copy of each PDF item
    certification-902-14.pdf   the Rule 902(14) certification (Bates-stamped)
    README.txt                 how to check the package offline

`taskforce-verify package.zip` (verify.py) re-checks the signature and every
hash without the app.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import current_app, has_app_context
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from taskforce.accounts.permissions import Actor
from taskforce.audit import service as audit
from taskforce.errors import Conflict, DomainError, NotFound, Unavailable
from taskforce.evidence import ledger, policy, reports, service
from taskforce.evidence.models import (
    PACKAGE_STATUSES,
    EvidenceItem,
    Package,
    PackageGrant,
    PackageItem,
)
from taskforce.evidence.service import (
    NAME_MAX,
    PLACE_MAX,
    _chain_ok,
    _commit,
    _Errors,
    _events_of,
    _receiver,
    _report_item,
    _who,
    raise_forbidden,
    survivor_redactor,
)
from taskforce.evidence.storage import EvidenceStore, get_store
from taskforce.extensions import db
from taskforce.investigations import policy as case_policy
from taskforce.investigations.models import Case
from taskforce.investigations.policy import READ
from taskforce.investigations.service import get_case_or_404

FORMAT = "taskforce-package/1"
MANIFEST, SIGNATURE, PUBLIC_KEY = "manifest.json", "manifest.sig", "signing-key.pub.pem"
BATES_DIGITS = 6
STAMP_MAX_BYTES = 512 * 1024 * 1024  # larger PDFs go in native only (noted in the manifest)
COPY_CHUNK = 1024 * 1024


class IntegrityFailure(Exception):
    """An item's stored bytes no longer hash to what was recorded: the package stops."""


# --- the signing key ----------------------------------------------------------------------

def load_signing_key(path: str | os.PathLike[str] | None, *, create: bool) -> Ed25519PrivateKey:
    """The task force's Ed25519 key from a PEM file; with `create` (not production) a
    missing file is made (mode 0600)."""
    if not path:
        raise Unavailable("No package signing key is configured (PACKAGE_SIGNING_KEY_FILE); "
                          "packages cannot be signed.")
    path = Path(path)
    if not path.exists():
        if not create:
            raise Unavailable(f"The package signing key file {path} does not exist.")
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        return key
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise Unavailable(f"The package signing key in {path} cannot be read: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise Unavailable(f"The package signing key in {path} is not an Ed25519 key.")
    return key


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(key: Ed25519PrivateKey) -> str:
    """SHA-256 of the raw 32-byte public key, hex (what the verifier prints)."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


# --- Bates numbers ------------------------------------------------------------------------

def bates_label(prefix: str, number: int) -> str:
    return f"{prefix}-{number:0{BATES_DIGITS}d}"


def stamp_pdf(source: Any, prefix: str, start: int) -> tuple[bytes, int]:
    """Stamp a PDF we generated ourselves (in this process): see reports.stamp_pdf."""
    return reports.stamp_pdf(source, prefix, start, label=bates_label)


def page_count(data: bytes) -> int:
    from pypdf import PdfReader

    return len(PdfReader(io.BytesIO(data)).pages)


# --- writing the ZIP ----------------------------------------------------------------------

@dataclass
class PackageEntry:
    """One selected item, already redacted, with a way to read its bytes."""

    number: str
    description: str
    kind: str
    source: str
    size: int | None
    sha256: str | None
    md5: str | None
    collected_by: str
    collected_at: datetime
    collected_place: str
    content_type: str | None
    filename: str | None
    custody_events: int
    custody_head: str | None
    open_bytes: Callable[[], Iterator[bytes]] | None = None  # None for physical items


@dataclass
class PackageSpec:
    number: str
    case_number: str
    case_title: str
    agency: str
    created_by: str
    created_at: datetime
    bates_prefix: str
    entries: list[PackageEntry]
    withheld: list[dict[str, str]]
    redaction: dict[str, Any]
    custody_report: Callable[[], bytes]  # builds the (redacted) custody report PDF
    certification: Callable[..., bytes]  # reports.certification, with the package's facts


@dataclass
class PackageResult:
    files: list[dict[str, Any]] = field(default_factory=list)
    bates_first: int | None = None
    bates_last: int | None = None
    notes: list[str] = field(default_factory=list)
    key_fingerprint: str = ""


def _safe_name(name: str | None, fallback: str) -> str:
    name = (name or "").replace("/", "_").replace("\\", "_").strip(". ")
    return name[:120] or fallback


class _Zip:
    """Adds files to the ZIP and keeps each one's SHA-256 and size for the manifest."""

    def __init__(self, path: Path) -> None:
        self.zip = zipfile.ZipFile(path, "w", allowZip64=True)
        self.files: list[dict[str, Any]] = []

    def add_bytes(self, name: str, data: bytes, role: str, **extra: Any) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.zip.writestr(_info(name, zipfile.ZIP_DEFLATED), data)
        self.files.append({"path": name, "size": len(data), "sha256": digest, "role": role,
                           **extra})
        return digest

    def add_stream(self, name: str, chunks: Iterator[bytes], role: str, *,
                   spool: Any = None, **extra: Any) -> tuple[str, str, int]:
        """Stream into the ZIP (stored, not deflated: evidence is often already
        compressed and may be GBs). Returns (sha256, md5, size)."""
        sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
        info = _info(name, zipfile.ZIP_STORED)
        with self.zip.open(info, "w", force_zip64=True) as out:
            for chunk in chunks:
                sha.update(chunk)
                md5.update(chunk)
                size += len(chunk)
                out.write(chunk)
                if spool is not None:
                    spool.write(chunk)
        digest = sha.hexdigest()
        self.files.append({"path": name, "size": size, "sha256": digest, "role": role,
                           **extra})
        return digest, md5.hexdigest(), size

    def close(self) -> None:
        self.zip.close()


def _info(name: str, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=datetime.now(UTC).timetuple()[:6])
    info.compress_type = compress
    info.external_attr = 0o444 << 16
    return info


README = """This is a sealed evidence package from the task force's evidence system.

Check it offline (no network, no server) with the verifier that ships with the system:

    taskforce-verify {name}

It checks the Ed25519 signature of manifest.json (manifest.sig, with signing-key.pub.pem)
and re-computes the SHA-256 of every file the manifest lists. Compare the key fingerprint
it prints with the one the task force publishes and the one printed on the certification:

    {fingerprint}

items/ holds each item exactly as collected; its SHA-256 equals the hash recorded when the
item was received. bates/ holds Bates-stamped copies of the PDF items (their hashes differ
from the originals by design; the manifest lists both).
"""


def write_package(path: Path, spec: PackageSpec, key: Ed25519PrivateKey, *,
                  progress: Callable[[int, int], Any] | None = None) -> PackageResult:
    """Write the whole package to `path`. Raises IntegrityFailure if an item's bytes do
    not hash to what was recorded (nothing is kept then: the caller removes the file)."""
    result = PackageResult(key_fingerprint=fingerprint(key))
    out = _Zip(path)
    total = len(spec.entries) + 3
    done = 0
    bates_next = 1
    items_doc: list[dict[str, Any]] = []
    bates_docs: list[dict[str, Any]] = []
    try:
        # 1. the custody report comes first in the Bates run
        report = spec.custody_report()
        stamped, pages = stamp_pdf(io.BytesIO(report), spec.bates_prefix, bates_next)
        out.add_bytes("custody-report.pdf", stamped, "custody_report",
                      bates=[bates_label(spec.bates_prefix, bates_next),
                             bates_label(spec.bates_prefix, bates_next + pages - 1)])
        bates_docs.append({"file": "custody-report.pdf", "first": bates_next,
                           "last": bates_next + pages - 1})
        bates_next += pages
        done += 1
        if progress:
            progress(done, total)

        # 2. each item's bytes, verified against the recorded hash on the way in
        for entry in spec.entries:
            doc: dict[str, Any] = {
                "number": entry.number, "description": entry.description,
                "kind": entry.kind, "source": entry.source, "size": entry.size,
                "sha256": entry.sha256, "md5": entry.md5,
                "collected_by": entry.collected_by,
                "collected_at": entry.collected_at.astimezone(UTC).isoformat(),
                "collected_place": entry.collected_place,
                "content_type": entry.content_type, "file": None, "bates": None,
                "custody_events": entry.custody_events, "custody_head": entry.custody_head,
            }
            if entry.open_bytes is not None:
                name = f"items/{entry.number}/{_safe_name(entry.filename, entry.number + '.bin')}"
                is_pdf = entry.content_type == "application/pdf"
                spool = tempfile.NamedTemporaryFile(suffix=".pdf") if is_pdf and (  # noqa: SIM115
                    entry.size or 0) <= STAMP_MAX_BYTES \
                    else None
                try:
                    sha, md5, size = out.add_stream(name, entry.open_bytes(), "item", spool=spool,
                                                    item=entry.number)
                    if (sha, md5, size) != (entry.sha256, entry.md5, entry.size):
                        raise IntegrityFailure(
                            f"{entry.number}: the stored bytes give SHA-256 {sha} ({size} bytes) "
                            f"but {entry.sha256} ({entry.size} bytes) was recorded")
                    doc["file"] = name
                    if spool is not None:
                        spool.flush()
                        try:  # an item's PDF is hostile input: stamped in a bounded child
                            stamped, pages = reports.stamp_pdf_bounded(
                                spool.name, spec.bates_prefix, bates_next,
                                digits=BATES_DIGITS)
                        except ValueError as e:
                            result.notes.append(f"{entry.number}: not Bates-stamped ({e})"[:300])
                        else:
                            bname = f"bates/{entry.number}.pdf"
                            first, last = bates_next, bates_next + pages - 1
                            out.add_bytes(bname, stamped, "bates_copy", item=entry.number,
                                          bates=[bates_label(spec.bates_prefix, first),
                                                 bates_label(spec.bates_prefix, last)])
                            doc["bates"] = {"file": bname,
                                            "first": bates_label(spec.bates_prefix, first),
                                            "last": bates_label(spec.bates_prefix, last)}
                            bates_docs.append({"file": bname, "first": first, "last": last})
                            bates_next += pages
                    elif is_pdf:
                        result.notes.append(f"{entry.number}: too large to Bates-stamp; "
                                            "included as collected")
                finally:
                    if spool is not None:
                        spool.close()
            items_doc.append(doc)
            done += 1
            if progress:
                progress(done, total)

        # 3. the certification closes the Bates run (two passes: it names its own range)
        def cert(first: int, last: int) -> bytes:
            return spec.certification(
                items=items_doc, bates_range=f"{bates_label(spec.bates_prefix, 1)} - "
                                             f"{bates_label(spec.bates_prefix, last)}",
                key_fingerprint=result.key_fingerprint)

        draft = cert(bates_next, bates_next + 9)
        pages = page_count(draft)
        final_last = bates_next + pages - 1
        stamped, pages = stamp_pdf(io.BytesIO(cert(bates_next, final_last)), spec.bates_prefix,
                                   bates_next)
        out.add_bytes("certification-902-14.pdf", stamped, "certification",
                      bates=[bates_label(spec.bates_prefix, bates_next),
                             bates_label(spec.bates_prefix, bates_next + pages - 1)])
        bates_docs.append({"file": "certification-902-14.pdf", "first": bates_next,
                           "last": bates_next + pages - 1})
        result.bates_first, result.bates_last = 1, bates_next + pages - 1
        done += 1
        if progress:
            progress(done, total)

        # 4. manifest.csv, the key, the README, then the signed manifest
        out.add_bytes("manifest.csv", _manifest_csv(items_doc), "manifest_csv")
        pub = public_pem(key)
        out.add_bytes(PUBLIC_KEY, pub, "public_key")
        out.add_bytes("README.txt", README.format(name=f"{spec.number}.zip",
                                                  fingerprint=result.key_fingerprint
                                                  ).encode("utf-8"), "readme")
        manifest = {
            "format": FORMAT,
            "package": {"number": spec.number, "case_number": spec.case_number,
                        "case_title": spec.case_title, "agency": spec.agency,
                        "created_by": spec.created_by,
                        "created_at": spec.created_at.astimezone(UTC).isoformat(),
                        "bates_prefix": spec.bates_prefix,
                        "bates_first": bates_label(spec.bates_prefix, result.bates_first),
                        "bates_last": bates_label(spec.bates_prefix, result.bates_last)},
            "signing_key": {"algorithm": "Ed25519", "file": PUBLIC_KEY,
                            "fingerprint_sha256": result.key_fingerprint},
            "items": items_doc,
            "withheld": spec.withheld,
            "redaction": spec.redaction,
            "bates": [{"file": d["file"], "first": bates_label(spec.bates_prefix, d["first"]),
                       "last": bates_label(spec.bates_prefix, d["last"])} for d in bates_docs],
            "notes": result.notes,
            "files": out.files,
        }
        body = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")
        signature = base64.b64encode(key.sign(body)) + b"\n"
        out.zip.writestr(_info(MANIFEST, zipfile.ZIP_DEFLATED), body)
        out.zip.writestr(_info(SIGNATURE, zipfile.ZIP_STORED), signature)
        result.files = list(out.files)
    finally:
        out.close()
    return result


CSV_COLUMNS = ("number", "description", "kind", "size", "sha256", "md5", "collected_by",
               "collected_at", "collected_place", "source", "file", "bates_first", "bates_last")


def _manifest_csv(items: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for item in items:
        bates = item.get("bates") or {}
        row = {**item, "bates_first": bates.get("first", ""), "bates_last": bates.get("last", "")}
        writer.writerow([_csv_cell(row.get(c)) for c in CSV_COLUMNS])
    return buf.getvalue().encode("utf-8")


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # a spreadsheet must not run a cell as a formula
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# --- the service: asking for, building, sharing and downloading packages -----------

PACKAGE_ITEMS_MAX = 1000
GRANT_DAYS_MAX = 366
_PACKAGE_NOT_FOUND = "No such package, or it is not shared with you."


def _package_settings() -> tuple[str, int]:
    cfg = current_app.config if has_app_context() else {}
    return (str(cfg.get("PACKAGE_BATES_PREFIX") or "TF"),
            int(cfg.get("PACKAGE_ACCESS_DAYS") or 30))


def _as_ids(errors: _Errors, name: str, value: Any) -> list[int]:
    if isinstance(value, str | int):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        errors.add(name, "Choose at least one item.")
        return []
    ids = []
    for v in value:
        if isinstance(v, bool):
            v = None
        elif isinstance(v, str) and v.strip().isdigit():
            v = int(v)
        if not isinstance(v, int) or not 0 < v < 2**31:
            errors.add(name, "Item ids are whole numbers.")
            return []
        if v not in ids:
            ids.append(v)
    if len(ids) > PACKAGE_ITEMS_MAX:
        errors.add(name, f"At most {PACKAGE_ITEMS_MAX} items in one package.")
    return ids


def _package_number(case: Case) -> str:
    count = db.session.scalar(select(func.count()).select_from(Package)
                              .where(Package.case_id == case.id)) or 0
    return f"{case.number}-P{count + 1:02d}"


def request_package(*, actor: Actor, case_id: Any, item_ids: Any, title: Any = None,
                    bates_prefix: Any = None) -> Package:
    """Select items of a case for a prosecutor package; the build runs as a job (sent
    after the commit). Items that identify a survivor and are not released are withheld
    (listed by number only). A prosecutor who asks gets read-only access until the
    default expiry."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ,
                           attempt="evidence.package_request")
    level = case_policy.access(actor, case)
    if not policy.can_build_package(actor, case, level):
        audit.record_now(actor=actor, action="evidence.package_request", outcome="denied",
                         object_type="case", object_id=case.id, case_id=case.id)
        raise_forbidden("Only a prosecutor on the case, or its lead, may build a package.")
    default_prefix, access_days = _package_settings()
    errors = _Errors()
    ids = _as_ids(errors, "item_ids", item_ids)
    title = errors.text("title", title, max_len=NAME_MAX)
    prefix = errors.text("bates_prefix", bates_prefix, max_len=24) or default_prefix
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,23}", prefix):
        errors.add("bates_prefix", "Letters, digits, '.', '_' and '-' only.")
    items = []
    if ids:
        found = {i.id: i for i in db.session.scalars(
            select(EvidenceItem).where(EvidenceItem.id.in_(ids),
                                       EvidenceItem.case_id == case.id))}
        missing = [i for i in ids if i not in found]
        if missing:
            errors.add("item_ids", f"Not items of this case: {', '.join(map(str, missing[:10]))}.")
        items = sorted(found.values(), key=lambda i: i.seq)
    errors.raise_if_any()
    package = Package(case_id=case.id, number=_package_number(case), title=title,
                      status="building", progress=0, bates_prefix=prefix,
                      created_by_id=actor.user_id, created_at=service.now())
    db.session.add(package)
    db.session.flush()
    for position, item in enumerate(items, start=1):
        withheld = item.withheld_from_packages
        db.session.add(PackageItem(
            package_id=package.id, item_id=item.id, position=position, withheld=withheld,
            withheld_reason="Identifies a survivor; not released by a victim specialist"
            if withheld else None))
    if actor.has_role("prosecutor") and actor.user_id is not None:
        db.session.add(PackageGrant(package_id=package.id, user_id=actor.user_id,
                                    expires_at=service.now() + timedelta(days=access_days),
                                    granted_by_id=actor.user_id, granted_at=service.now()))
    audit.record(actor=actor, action="evidence.package_request", object_type="package",
                 object_id=package.id, case_id=case.id,
                 details={"number": package.number, "items": [i.number for i in items][:200],
                          "withheld": sum(1 for i in items if i.withheld_from_packages)})
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("Another package of this case was started at the same moment; "
                       "try again.") from None
    package_id = package.id
    from taskforce.evidence import tasks
    from taskforce.jobs import dispatch

    dispatch(tasks.build_package, (package_id,))
    return db.session.get(Package, package_id, populate_existing=True)


def build_package(package_id: int, *, store: EvidenceStore | None = None) -> Package:
    """The job: write the ZIP to a temp file, store it in the evidence store under its
    own hash, then (one transaction) mark it ready and append EXPORTED to each included
    item. A failure marks the package failed with the reason; nothing else changes."""
    package = db.session.get(Package, package_id)
    if package is None or package.status != "building":
        return package
    store = store or get_store()
    tmp_dir = tempfile.mkdtemp(prefix="package-")
    path = Path(tmp_dir) / f"{package.number}.zip"
    try:
        spec, included = _package_spec(package, store)
        cfg = current_app.config
        key = load_signing_key(cfg.get("PACKAGE_SIGNING_KEY_FILE"),
                                        create=cfg.get("ENV_NAME") != "production")
        last = [-1]

        def progress(done: int, total: int) -> None:
            percent = int(done * 95 / max(total, 1))
            if percent >= last[0] + 5:
                last[0] = percent
                db.session.execute(update(Package).where(Package.id == package_id)
                                   .values(progress=percent))
                db.session.commit()

        result = write_package(path, spec, key, progress=progress)
        with open(path, "rb") as f:
            stored = store.put_stream(f)
    except Exception as err:
        db.session.rollback()
        message = err.message if isinstance(err, DomainError) else (
            str(err) if isinstance(err, IntegrityFailure)
            else "The package could not be built; the error was logged.")
        package = db.session.get(Package, package_id)
        package.status, package.error, package.finished_at = "failed", message[:2000], service.now()
        audit.record(actor=_package_actor(package), action="evidence.package_build",
                     outcome="failed", object_type="package", object_id=package.id,
                     case_id=package.case_id, details={"error": message[:300]})
        db.session.commit()
        if not isinstance(err, DomainError | IntegrityFailure):
            raise
        return package
    finally:
        path.unlink(missing_ok=True)
        os.rmdir(tmp_dir)
    package = db.session.get(Package, package_id)
    package.status, package.progress, package.finished_at = "ready", 100, service.now()
    package.size, package.sha256, package.md5 = stored.size, stored.sha256, stored.md5
    package.storage_key, package.key_fingerprint = stored.key, result.key_fingerprint
    package.bates_first, package.bates_last = result.bates_first, result.bates_last
    package.summary = {"files": len(result.files), "notes": result.notes,
                       "withheld": spec.withheld, "redaction": spec.redaction}
    actor = _package_actor(package)
    who = _who(actor) if actor.user_id is not None else {
        "user_id": None, "username": actor.username, "user_name": "package builder"}
    for item in included:
        ledger.append(db.session, item, kind="EXPORTED", at=service.now(),
                      place=f"package {package.number}",
                      reason=f"Exported into prosecutor package {package.number}",
                      details={"package": package.number, "package_sha256": stored.sha256,
                               "sha256": item.sha256}, **who)
    audit.record(actor=actor, action="evidence.package_build", object_type="package",
                 object_id=package.id, case_id=package.case_id,
                 details={"number": package.number, "sha256": stored.sha256,
                          "size": stored.size, "items": len(included),
                          "bates": [package.bates_first, package.bates_last]})
    _commit("Another change to this evidence got there first; try again.")
    return package


def _package_actor(package: Package) -> Actor:
    user = package.created_by
    return Actor.for_user(user) if user is not None else Actor.system("package-builder")


def _package_spec(package: Package, store: EvidenceStore):
    case = db.session.get(Case, package.case_id)
    redact = survivor_redactor(case.id, released=True)
    entries, included, withheld = [], [], []
    for entry in package.entries:
        item = entry.item
        if entry.withheld:
            withheld.append({"number": item.number, "reason": entry.withheld_reason or ""})
            continue
        if item.is_digital and redact.active and item.survivor_released_at is None \
                and redact.found_in(store.open_stream(item.sha256)):
            # its bytes name a survivor as plain text: withheld, as if it were marked
            withheld.append({"number": item.number,
                             "reason": "Its content names a survivor; mark it and have a "
                                       "victim specialist release it to include it"})
            continue
        events = _events_of(item.id)
        digest = item.sha256
        entries.append(PackageEntry(
            number=item.number, description=redact(item.description), kind=item.kind,
            source=item.source, size=item.size, sha256=item.sha256, md5=item.md5,
            collected_by=redact(item.collected_by), collected_at=item.collected_at,
            collected_place=redact(item.collected_place), content_type=item.content_type,
            filename=redact(item.original_filename), custody_events=len(events),
            custody_head=item.custody_hash,
            open_bytes=(lambda d=digest: store.open_stream(d)) if item.is_digital else None))
        included.append(item)
    builder = package.created_by
    builder_name = f"{builder.full_name} ({builder.username})" if builder else "system"
    agency = case.agency.name if getattr(case, "agency", None) is not None else "the task force"

    def custody_report() -> bytes:
        return reports.custody_report(
            case_number=case.number, case_title=redact(case.title),
            items=[_report_item(i, _events_of(i.id), redact) for i in included],
            generated_by=builder_name, generated_at=service.now(), ledger_ok=_chain_ok(included),
            note=("Survivor identities are shown as pseudonyms unless a victim specialist "
                  "released them." if redact.active else "")) if included else \
            reports.custody_report(case_number=case.number, case_title=redact(case.title),
                                   items=[], generated_by=builder_name, generated_at=service.now())

    def certification(*, items, bates_range, key_fingerprint) -> bytes:
        return reports.certification(
            package_number=package.number, case_number=case.number, agency=agency,
            prepared_by=builder_name, prepared_at=service.now(), withheld=len(withheld),
            key_fingerprint=key_fingerprint, bates_range=bates_range,
            items=[reports.CertifiedItem(
                number=i["number"], description=i["description"], sha256=i["sha256"],
                md5=i["md5"], size=i["size"], collected_at=datetime.fromisoformat(
                    i["collected_at"]), collected_by=i["collected_by"],
                bates=f"{i['bates']['first']} - {i['bates']['last']}" if i["bates"] else "")
                for i in items])

    spec = PackageSpec(
        number=package.number, case_number=case.number, case_title=redact(case.title),
        agency=agency, created_by=builder_name, created_at=package.created_at,
        bates_prefix=package.bates_prefix, entries=entries, withheld=withheld,
        redaction={"survivor_identities": "pseudonyms unless released by a victim specialist",
                   "survivors_redacted": len({v for v in redact._map.values()})},
        custody_report=custody_report, certification=certification)
    return spec, included


@dataclass
class PackageView:
    package: Package
    case: Case
    can_manage: bool
    grant: PackageGrant | None  # the viewer's own grant, if any
    items: list[PackageItem]

    @property
    def expired(self) -> bool:
        return self.grant is not None and self.grant.expires_at <= service.now()


def _package_access(actor: Actor, package_id: Any, attempt: str
                    ) -> tuple[Package, Case, bool, PackageGrant | None]:
    row_id = package_id if isinstance(package_id, int) else (
        int(package_id) if isinstance(package_id, str) and package_id.isdigit() else None)
    package = db.session.get(Package, row_id) if row_id and row_id < 2**31 else None
    case = db.session.get(Case, package.case_id) if package is not None else None
    grant = None
    if package is not None and actor.user_id is not None:
        grant = db.session.scalar(select(PackageGrant).where(
            PackageGrant.package_id == package.id, PackageGrant.user_id == actor.user_id,
            PackageGrant.revoked_at.is_(None)).order_by(PackageGrant.expires_at.desc()))
    manages = case is not None and policy.can_manage_packages(case_policy.access(actor, case))
    if package is None or (not manages and grant is None):
        audit.record_now(actor=actor, action=attempt, outcome="denied", object_type="package",
                         object_id=package_id, case_id=case.id if case else None)
        raise NotFound(_PACKAGE_NOT_FOUND)
    return package, case, manages, grant


def get_package(*, actor: Actor, package_id: Any) -> PackageView:
    package, case, manages, grant = _package_access(actor, package_id, "evidence.package_read")
    audit.record(actor=actor, action="evidence.package_read", object_type="package",
                 object_id=package.id, case_id=case.id)
    db.session.commit()
    return PackageView(package=package, case=case, can_manage=manages, grant=grant,
                       items=list(package.entries))


def list_packages(*, actor: Actor, case_id: Any) -> list[Package]:
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ,
                           attempt="evidence.package_list")
    level = case_policy.access(actor, case)
    query = select(Package).where(Package.case_id == case.id).order_by(Package.id.desc())
    if not policy.can_manage_packages(level):  # others see the packages they were given
        query = query.where(Package.id.in_(select(PackageGrant.package_id).where(
            PackageGrant.user_id == actor.user_id, PackageGrant.revoked_at.is_(None))))
    rows = list(db.session.scalars(query))
    audit.record(actor=actor, action="evidence.package_list", object_type="case",
                 object_id=case.id, case_id=case.id, details={"packages": len(rows)})
    db.session.commit()
    return rows


def my_packages(*, actor: Actor) -> list[PackageGrant]:
    """The packages shared with this person (expired ones too, marked by the page)."""
    rows = list(db.session.scalars(select(PackageGrant).where(
        PackageGrant.user_id == actor.user_id, PackageGrant.revoked_at.is_(None))
        .order_by(PackageGrant.expires_at.desc())))
    audit.record(actor=actor, action="evidence.package_list", object_type="user",
                 object_id=actor.user_id, details={"grants": len(rows)})
    db.session.commit()
    return rows


def grant_package_access(*, actor: Actor, package_id: Any, to_user_id: Any = None,
                         to_username: Any = None, expires_at: Any = None) -> PackageGrant:
    """Read-only access for a prosecutor to one package, until a set date."""
    package, case, manages, _ = _package_access(actor, package_id, "evidence.package_grant")
    if not manages:
        audit.record_now(actor=actor, action="evidence.package_grant", outcome="denied",
                         object_type="package", object_id=package.id, case_id=case.id)
        raise_forbidden("Only someone who manages the case may share its packages.")
    errors = _Errors()
    user = _receiver(errors, to_user_id, to_username)
    if user is not None and "prosecutor" not in user.role_names:
        errors.add("to_user", "Packages are shared with prosecutors only.")
    _, access_days = _package_settings()
    expires = errors.moment("expires_at", expires_at, default=service.now() + timedelta(
        days=access_days), future=True)
    if expires > service.now() + timedelta(days=GRANT_DAYS_MAX):
        errors.add("expires_at", f"At most {GRANT_DAYS_MAX} days ahead.")
    errors.raise_if_any()
    grant = PackageGrant(package_id=package.id, user_id=user.id, expires_at=expires,
                         granted_by_id=actor.user_id, granted_at=service.now())
    db.session.add(grant)
    db.session.flush()
    audit.record(actor=actor, action="evidence.package_grant", object_type="package",
                 object_id=package.id, case_id=case.id,
                 details={"number": package.number, "to": user.id,
                          "expires_at": expires.isoformat()})
    _commit("Another change to this package got there first; try again.")
    return grant


def revoke_package_access(*, actor: Actor, package_id: Any, grant_id: Any) -> PackageGrant:
    package, case, manages, _ = _package_access(actor, package_id, "evidence.package_revoke")
    if not manages:
        raise_forbidden("Only someone who manages the case may withdraw access.")
    grant = next((g for g in package.grants if str(g.id) == str(grant_id)), None)
    if grant is None or grant.revoked_at is not None:
        raise NotFound("No such active access to this package.")
    grant.revoked_at = service.now()
    audit.record(actor=actor, action="evidence.package_revoke", object_type="package",
                 object_id=package.id, case_id=case.id, details={"grant_id": grant.id})
    _commit("Another change to this package got there first; try again.")
    return grant


@dataclass
class PackageDownload:
    package: Package
    chunks: Iterator[bytes]
    filename: str
    size: int


def download_package(*, actor: Actor, package_id: Any, place: str = "",
                     store: EvidenceStore | None = None) -> PackageDownload:
    """The package's bytes, for those who manage the case or hold an unexpired grant.
    Each download appends ACCESSED to every item in it and writes an audit record."""
    package, case, manages, grant = _package_access(actor, package_id,
                                                    "evidence.package_download")
    if not manages and grant is not None and grant.expires_at <= service.now():
        audit.record_now(actor=actor, action="evidence.package_download", outcome="denied",
                         object_type="package", object_id=package.id, case_id=case.id,
                         details={"reason": "access expired", "grant_id": grant.id})
        raise_forbidden(f"Your access to package {package.number} expired on "
                        f"{grant.expires_at:%Y-%m-%d %H:%M} UTC; ask the case lead to "
                        "renew it.")
    if package.status != "ready":
        raise Conflict(f"Package {package.number} is {PACKAGE_STATUSES[package.status].lower()}"
                       "; it cannot be downloaded.")
    store = store or get_store()
    chunks = store.open_stream(package.sha256)
    try:
        who = _who(actor)
        for entry in package.entries:
            if entry.withheld:
                continue
            ledger.append(db.session, entry.item, kind="ACCESSED", at=service.now(),
                          place=place[:PLACE_MAX] or f"package {package.number}",
                          reason=f"Prosecutor package {package.number} downloaded",
                          details={"via": "package download", "package": package.number,
                                   "package_sha256": package.sha256,
                                   "grant_id": grant.id if grant else None}, **who)
        audit.record(actor=actor, action="evidence.package_download", object_type="package",
                     object_id=package.id, case_id=case.id,
                     details={"number": package.number, "sha256": package.sha256,
                              "grant_id": grant.id if grant else None})
        _commit("Another change to this package got there first; try again.")
    except BaseException:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        raise
    return PackageDownload(package=package, chunks=chunks, filename=f"{package.number}.zip",
                           size=int(package.size or 0))
