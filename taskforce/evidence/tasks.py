"""Background jobs: re-hash one item, or every digital item (the integrity sweep).

Jobs carry ids, not objects, and act as the system (Actor.system).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import select

from taskforce.accounts.permissions import Actor
from taskforce.errors import Unavailable
from taskforce.evidence import service
from taskforce.evidence.models import EvidenceItem
from taskforce.extensions import db
from taskforce.jobs import job

SWEEP_ACTOR = "integrity-sweep"


def digital_item_ids(batch_size: int = 500) -> Iterator[int]:
    last = 0
    while True:
        ids = list(db.session.scalars(
            select(EvidenceItem.id).where(EvidenceItem.kind == "digital", EvidenceItem.id > last)
            .order_by(EvidenceItem.id).limit(batch_size)))
        if not ids:
            return
        yield from ids
        last = ids[-1]


def sweep(*, progress: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """Re-hash every digital item; VERIFIED appended to each (failures included)."""
    actor = Actor.system(SWEEP_ACTOR)
    result: dict[str, Any] = {"checked": 0, "ok": 0, "failed": [], "unavailable": []}
    for item_id in list(digital_item_ids()):
        try:
            report = service.verify(actor=actor, item_id=item_id)
        except Unavailable as err:
            result["unavailable"].append({"item_id": item_id, "message": err.message})
        else:
            result["checked"] += 1
            if report.ok:
                result["ok"] += 1
            else:
                result["failed"].append({"item_id": item_id, "number": report.number,
                                         "problem": report.problem})
        if progress is not None:
            progress(1)
    return result


@job()
def verify_item(item_id: int) -> dict[str, Any]:
    report = service.verify(actor=Actor.system(SWEEP_ACTOR), item_id=item_id)
    return {"item_id": report.item_id, "ok": report.ok, "problem": report.problem}


@job()
def integrity_sweep() -> dict[str, Any]:
    return sweep()
