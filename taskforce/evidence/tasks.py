"""Background jobs: re-hash one item, or every digital item (the integrity sweep).

Jobs carry ids, not objects, and act as the system (Actor.system).

The sweep streams every stored object back and re-hashes it (SHA-256 and
size: the SHA-256 decides; MD5 would halve the speed for nothing). The
bytes of the next items stream and hash on worker threads (socket reads
and hashlib release the GIL) while this thread writes the VERIFIED events
of the ones before, a batch per transaction, so the database work hides
behind the transfer. Then it removes orphaned uploads older than the grace
period (storage.remove_orphans).
"""
from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import select

from taskforce.accounts.permissions import Actor
from taskforce.errors import Unavailable
from taskforce.evidence import service
from taskforce.evidence.models import EvidenceItem
from taskforce.evidence.storage import ORPHAN_GRACE, EvidenceStore, ObjectMissing, get_store
from taskforce.extensions import db
from taskforce.jobs import job

SWEEP_ACTOR = "integrity-sweep"
SWEEP_STREAMS = 2  # objects streaming and hashing at once (threads)
SWEEP_WINDOW = 64  # objects queued for those threads ahead of the database writes
SWEEP_BATCH = 16  # results recorded per transaction, at most
SWEEP_BATCH_SECONDS = 0.25  # or what came in over this long (large objects)


def digital_items(batch_size: int = 500) -> Iterator[tuple[int, str]]:
    """(id, sha256) of every digital item, in id order, a batch per query."""
    last = 0
    while True:
        rows = list(db.session.execute(
            select(EvidenceItem.id, EvidenceItem.sha256)
            .where(EvidenceItem.kind == "digital", EvidenceItem.id > last)
            .order_by(EvidenceItem.id).limit(batch_size)))
        db.session.rollback()  # no transaction stays open while bytes stream
        if not rows:
            return
        yield from ((int(r[0]), str(r[1])) for r in rows)
        last = int(rows[-1][0])


def digital_item_ids(batch_size: int = 500) -> Iterator[int]:
    for item_id, _ in digital_items(batch_size):
        yield item_id


def rehash(store: EvidenceStore, sha256: str) -> tuple[str | None, int | None]:
    """(SHA-256, size) of the stored bytes; (None, None) if they are missing."""
    try:
        chunks = store.open_stream(sha256)
    except ObjectMissing:
        return None, None
    digest, size = hashlib.sha256(), 0
    try:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return digest.hexdigest(), size


def orphan_grace() -> timedelta:
    if has_app_context():
        hours = current_app.config.get("EVIDENCE_ORPHAN_GRACE_HOURS")
        if hours not in (None, ""):
            return timedelta(hours=float(hours))
    return ORPHAN_GRACE


def sweep(*, progress: Callable[[int], Any] | None = None, store: EvidenceStore | None = None,
          grace: timedelta | None = None, streams: int = SWEEP_STREAMS,
          batch: int = SWEEP_BATCH) -> dict[str, Any]:
    """Re-hash every digital item; VERIFIED appended to each (failures included, with
    an IntegrityAlert); then remove orphaned uploads older than `grace`.

    `streams` objects stream and hash at once on worker threads, up to SWEEP_WINDOW
    ahead of this thread, which records the results `batch` at a time (one
    transaction each; missing bytes are recorded at once)."""
    actor = Actor.system(SWEEP_ACTOR)
    store = store or get_store()
    result: dict[str, Any] = {"checked": 0, "ok": 0, "bytes": 0, "failed": [],
                              "unavailable": [], "alerts": 0, "orphans_removed": []}
    pending: list[tuple[int, str | None, int | None]] = []
    started = [0.0]  # when the oldest pending result came in

    def flush() -> None:
        if not pending:
            return
        checks = service.record_sweep_checks(actor=actor, results=list(pending),
                                             store_name=store.name)
        for check in checks:
            result["checked"] += 1
            result["alerts"] += len(check.alerted)
            if check.ok:
                result["ok"] += 1
            else:
                result["failed"].append({"item_id": check.item_id, "number": check.number,
                                         "problem": check.problem})
        if progress is not None:
            progress(len(pending))
        pending.clear()

    def collect(item_id: int, future: Future) -> None:
        try:
            actual, size = future.result()
        except Unavailable as err:
            result["unavailable"].append({"item_id": item_id, "message": err.message})
            if progress is not None:
                progress(1)
            return
        result["bytes"] += size or 0
        if not pending:
            started[0] = time.monotonic()
        pending.append((item_id, actual, size))
        if len(pending) >= batch or actual is None \
                or time.monotonic() - started[0] >= SWEEP_BATCH_SECONDS:
            flush()  # while the threads stream the next objects

    in_flight: deque[tuple[int, Future]] = deque()
    with ThreadPoolExecutor(max(1, streams), thread_name_prefix="sweep") as pool:
        try:
            for item_id, sha256 in digital_items():
                in_flight.append((item_id, pool.submit(rehash, store, sha256)))
                while len(in_flight) >= SWEEP_WINDOW or (in_flight and in_flight[0][1].done()):
                    collect(*in_flight.popleft())
            while in_flight:
                collect(*in_flight.popleft())
            flush()
        finally:
            for _, future in in_flight:
                future.cancel()
    try:
        result["orphans_removed"] = store.remove_orphans(
            older_than=grace if grace is not None else orphan_grace())
    except Unavailable as err:
        result["unavailable"].append({"item_id": None, "message": err.message})
    return result


@job()
def verify_item(item_id: int) -> dict[str, Any]:
    report = service.verify(actor=Actor.system(SWEEP_ACTOR), item_id=item_id)
    return {"item_id": report.item_id, "ok": report.ok, "problem": report.problem}


@job()
def integrity_sweep() -> dict[str, Any]:
    """The daily sweep (Celery beat: see evidence.init_app)."""
    return sweep()


# --- text from PDFs ------------------------------------------------------------------------

@job()
def extract_text(item_id: int) -> dict[str, Any]:
    """Text, page count and metadata of a PDF item, in a bounded child process (see
    extraction.py); the item is marked "text not extracted" with the reason if the
    PDF is encrypted, malformed, hostile or too large."""
    import os
    import tempfile

    from taskforce.evidence import extraction

    item = db.session.get(EvidenceItem, item_id)
    if item is None or not item.is_digital or item.content_type != "application/pdf":
        return {"item_id": item_id, "skipped": True}
    sha256, size = item.sha256, int(item.size or 0)
    db.session.rollback()
    if size > extraction.MAX_PDF_BYTES:
        result = extraction.Extracted(ok=False, reason=(
            f"too large for text extraction ({size:,} bytes; the limit is "
            f"{extraction.MAX_PDF_BYTES:,})"))
    else:
        fd, path = tempfile.mkstemp(prefix="evidence-pdf-", suffix=".pdf")
        try:
            with os.fdopen(fd, "wb") as out:
                chunks = get_store().open_stream(sha256)
                try:
                    for chunk in chunks:
                        out.write(chunk)
                finally:
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()
            limits = {}
            if has_app_context():
                if current_app.config.get("EVIDENCE_TEXT_TIME_LIMIT"):
                    limits["time_limit"] = float(current_app.config["EVIDENCE_TEXT_TIME_LIMIT"])
                if current_app.config.get("EVIDENCE_TEXT_MEMORY_MB"):
                    limits["memory_limit"] = int(current_app.config["EVIDENCE_TEXT_MEMORY_MB"]) \
                        * 1024 * 1024
            result = extraction.extract_pdf(path, **limits)
        finally:
            os.unlink(path)
    service.record_text(item_id=item_id, extracted=result)
    return {"item_id": item_id, "ok": result.ok, "reason": result.reason,
            "pages": result.page_count}


# --- prosecutor packages (built in the background: they stream every item's bytes) --------

@job()
def build_package(package_id: int) -> dict[str, Any]:
    from taskforce.evidence import packages

    package = packages.build_package(package_id)
    if package is None:
        return {"package_id": package_id, "status": "missing"}
    return {"package_id": package_id, "status": package.status, "sha256": package.sha256,
            "error": package.error}
