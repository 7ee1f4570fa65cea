"""The chain of custody: appending events and checking every chain.

Each item has its own chain. Event seq 1 links to the item's genesis hash:
the SHA-256 of the item's identity and recorded hashes (id, case, number,
kind, sha256, md5, size), so changing what the item says its bytes are breaks
its chain at the first event. Each later event links to the hash of the one
before it. Editing an event breaks its own hash; deleting or inserting one
breaks the seq run or the next event's prev_hash; cutting events off the end
no longer matches the head kept on the item row (`custody_seq`,
`custody_hash`). `verify_ledger()` walks every chain and names the first
broken event; `flask evidence verify-ledger` runs it.

Appends to one item are serialised by an UPDATE of the item's row taken
before the head is read (a row lock on PostgreSQL until the transaction
ends; SQLite's single write lock), with the unique (item_id, seq) as the last
line: a race could only fail an append, never fork a chain.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from taskforce.audit.models import format_at
from taskforce.evidence.models import CUSTODY_KINDS, CustodyEvent, EvidenceItem

HASHED_FIELDS = ("item_id", "seq", "kind", "at", "user_id", "username", "user_name", "place",
                 "reason", "details", "prev_hash")
GENESIS_FIELDS = ("id", "case_id", "number", "kind", "sha256", "md5", "size")
DETAILS_MAX_CHARS = 8000


def canonical_bytes(values: Mapping[str, Any]) -> bytes:
    doc = {name: values.get(name) for name in HASHED_FIELDS}
    doc["at"] = format_at(values["at"])
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def compute_hash(values: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(values)).hexdigest()


def genesis_hash(item: Mapping[str, Any] | EvidenceItem) -> str:
    """What the first event of an item links to: the item's identity and recorded hashes."""
    get = item.get if isinstance(item, Mapping) else (lambda name: getattr(item, name))
    doc = {"ledger": "taskforce custody v1", **{name: get(name) for name in GENESIS_FIELDS}}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def details_text(details: Mapping[str, Any] | None) -> str | None:
    if not details:
        return None
    text = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      default=str)
    if len(text) > DETAILS_MAX_CHARS:
        raise ValueError(f"custody details take {len(text)} characters; the limit is "
                         f"{DETAILS_MAX_CHARS}")
    return text


def _clip(value: str | None, length: int) -> str | None:
    if value is None:
        return None
    return value.replace("\x00", "")[:length]


def append(session: Session, item: EvidenceItem, *, kind: str, at: datetime | None = None,
           user_id: int | None = None, username: str | None = None,
           user_name: str | None = None, place: str = "", reason: str = "",
           details: Mapping[str, Any] | None = None) -> CustodyEvent:
    """Append one event to the item's chain in the caller's transaction (the caller commits).

    The item must be flushed (it needs its id).
    """
    if kind not in CUSTODY_KINDS:
        raise ValueError(f"custody kind must be one of {tuple(CUSTODY_KINDS)}, not {kind!r}")
    if item.id is None:
        session.flush()
    # Take the item's row lock, then read the head as committed (not as cached).
    session.execute(update(EvidenceItem).where(EvidenceItem.id == item.id)
                    .values(custody_seq=EvidenceItem.custody_seq)
                    .execution_options(synchronize_session=False))
    head = session.execute(select(EvidenceItem.custody_seq, EvidenceItem.custody_hash)
                           .where(EvidenceItem.id == item.id)).one()
    seq = (head.custody_seq or 0) + 1
    prev = head.custody_hash if seq > 1 else genesis_hash(item)
    values: dict[str, Any] = {
        "item_id": item.id, "seq": seq, "kind": kind,
        "at": (at or datetime.now(UTC)).astimezone(UTC),
        "user_id": user_id, "username": _clip(username, 150), "user_name": _clip(user_name, 200),
        "place": _clip(place or "", 300), "reason": (reason or "").replace("\x00", ""),
        "details": details_text(details), "prev_hash": prev,
    }
    event = CustodyEvent(**values, hash=compute_hash(values))
    session.add(event)
    session.execute(update(EvidenceItem).where(EvidenceItem.id == item.id)
                    .values(custody_seq=seq, custody_hash=event.hash)
                    .execution_options(synchronize_session=False))
    session.flush()
    # keep the loaded object in step without making it dirty (the row is already written)
    set_committed_value(item, "custody_seq", seq)
    set_committed_value(item, "custody_hash", event.hash)
    return event


# --- checking -----------------------------------------------------------------------------

@dataclass(frozen=True)
class LedgerResult:
    ok: bool
    items: int  # items whose chains were checked and found sound
    events: int  # events checked and found sound
    item_id: int | None = None
    item_number: str | None = None
    seq: int | None = None
    event_id: int | None = None
    problem: str | None = None

    @property
    def message(self) -> str:
        if self.ok:
            return f"custody ledger intact: {self.events} events on {self.items} items"
        where = f"item {self.item_number} (id {self.item_id})"
        if self.seq is not None:
            where += f", event seq {self.seq}"
            if self.event_id is not None:
                where += f" (id {self.event_id})"
        return f"custody ledger BROKEN at {where}: {self.problem}"


def item_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(EvidenceItem)) or 0


def verify_item_chain(item: Mapping[str, Any], events: list[Mapping[str, Any]]
                      ) -> tuple[int, dict[str, Any]] | tuple[int, None]:
    """(events found sound, the first problem or None) for one item's chain."""
    prev = genesis_hash(item)
    expected = 1
    for row in events:
        seq = row["seq"]
        problem = None
        if seq != expected:
            if seq > expected:
                missing = (f"seq {expected}" if seq == expected + 1
                           else f"seq {expected}..{seq - 1}")
                problem = f"seq gap: {missing} missing (events deleted)"
            else:
                problem = f"seq out of order: expected {expected} (an event was inserted)"
        elif row["prev_hash"] != prev:
            before = ("the item's genesis hash: the item's recorded number or hashes changed, "
                      "or the event was rewritten" if seq == 1 else
                      f"the hash of seq {seq - 1} (an event was deleted, inserted or rewritten "
                      "before this one)")
            problem = f"prev_hash mismatch: does not match {before}"
        elif compute_hash(row) != row["hash"]:
            problem = "hash mismatch: the event was edited after it was written"
        if problem:
            return expected - 1, {"seq": seq, "event_id": row["id"], "problem": problem}
        prev = row["hash"]
        expected += 1
    last = expected - 1
    if last == 0:
        return 0, {"seq": None, "event_id": None,
                   "problem": "no custody events at all (the chain was deleted)"}
    if item["custody_seq"] != last or item["custody_hash"] != prev:
        return last, {"seq": item["custody_seq"], "event_id": None,
                      "problem": f"the chain ends at seq {last}, but the item's head says seq "
                                 f"{item['custody_seq']}: events cut off the end (deleted)"}
    return last, None


def verify_ledger(session: Session, *, batch_size: int = 200,
                  progress: Callable[[int], Any] | None = None) -> LedgerResult:
    """Walk every item's chain (items in id order, events in seq order) and stop
    at the first broken one. Reads in keyset batches: memory stays flat."""
    items_table = EvidenceItem.__table__
    events_table = CustodyEvent.__table__
    checked_items = checked_events = 0
    last_id = 0
    while True:
        items = session.execute(
            select(items_table).where(items_table.c.id > last_id)
            .order_by(items_table.c.id).limit(batch_size)).mappings().all()
        if not items:
            break
        ids = [row["id"] for row in items]
        by_item: dict[int, list[Mapping[str, Any]]] = {i: [] for i in ids}
        for row in session.execute(select(events_table).where(events_table.c.item_id.in_(ids))
                                   .order_by(events_table.c.item_id, events_table.c.seq)
                                   ).mappings():
            by_item[row["item_id"]].append(row)
        for item in items:
            sound, problem = verify_item_chain(item, by_item[item["id"]])
            if problem is not None:
                return LedgerResult(ok=False, items=checked_items,
                                    events=checked_events + sound, item_id=item["id"],
                                    item_number=item["number"], seq=problem["seq"],
                                    event_id=problem["event_id"], problem=problem["problem"])
            checked_items += 1
            checked_events += sound
        if progress is not None:
            progress(len(items))
        last_id = ids[-1]
    return LedgerResult(ok=True, items=checked_items, events=checked_events)
