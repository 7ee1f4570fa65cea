"""Audit service: the one audit call, the chain check, and reading the trail.

Writing
-------
`record()` appends to the caller's transaction, so the event commits or rolls
back with the change it describes. `record_now()` writes and commits in a
session of its own on the same engine: for denied or failed attempts whose
own transaction was rolled back. It never commits the caller's pending work.

Each append takes the chain head (last seq and hash) and links to it, so two
appends must never read the same head:

* PostgreSQL: `pg_advisory_xact_lock(CHAIN_LOCK_KEY)` before reading the head.
  The lock is held until the appending transaction ends, and under READ
  COMMITTED the head query that follows sees every append committed before
  the lock was granted. (Under REPEATABLE READ it could not: the duplicate
  `seq` would then fail on the unique constraint rather than fork the chain.)
* SQLite: the database has a single writer. The Python driver opens the
  transaction lazily at the first write, so a plain SELECT of the head would
  still race; we first run a write that touches no row
  (`UPDATE audit_events SET seq = seq WHERE 0`), which takes SQLite's write
  lock. From then until commit no other connection can write, so the head we
  read stays the head. Other writers wait (the driver's busy timeout).

Either way the unique `seq` is the last line: a race could only fail an
append, never fork the chain. The lock is held until the caller commits, so
services should commit promptly after recording.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import g, has_app_context
from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from taskforce.accounts.permissions import Actor
from taskforce.audit import policy
from taskforce.audit.models import (
    GENESIS_HASH,
    OUTCOMES,
    AuditEvent,
    compute_hash,
    format_at,
)
from taskforce.errors import Forbidden
from taskforce.extensions import db

# Key of the PostgreSQL advisory lock that serialises appends ("taskaudt" in
# ASCII). Any constant works as long as nothing else in the database uses it.
CHAIN_LOCK_KEY = 0x7461736B61756474

DETAILS_MAX_CHARS = 4000
_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_-]+)+")
_CHAIN_HOLDER = "audit_chain_transaction"  # Session.info key: the transaction that appended


# --- writing ------------------------------------------------------------------------------

def record(*, actor: Actor, action: str, outcome: str = "success", object_type: str | None = None,
           object_id: Any = None, case_id: int | None = None,
           details: dict | None = None) -> AuditEvent:
    """Append an audit event to the current transaction; the caller commits."""
    values = _event_values(actor=actor, action=action, outcome=outcome, object_type=object_type,
                           object_id=object_id, case_id=case_id, details=details)
    session = db.session()
    event = _append(session, values)
    session.info[_CHAIN_HOLDER] = session.get_transaction()
    _note_recorded()
    return event


def record_now(*, actor: Actor, action: str, outcome: str = "success",
               object_type: str | None = None, object_id: Any = None,
               case_id: int | None = None, details: dict | None = None) -> AuditEvent:
    """Append and commit in a transaction of its own (denied or failed attempts,
    whose own transaction was rolled back)."""
    values = _event_values(actor=actor, action=action, outcome=outcome, object_type=object_type,
                           object_id=object_id, case_id=case_id, details=details)
    event = _append_alone(values)
    _note_recorded()
    return event


def record_request(*, actor: Actor, endpoint: str, outcome: str, status_code: int,
                   object_type: str | None = None, object_id: Any = None,
                   case_id: int | None = None, details: dict | None = None) -> AuditEvent:
    """The request-level event written by the after-request hook (own transaction)."""
    values = _event_values(actor=actor, action=f"request.{endpoint.lower()}", outcome=outcome,
                           object_type=object_type, object_id=object_id, case_id=case_id,
                           details=details, status_code=status_code)
    return _append_alone(values)


def _event_values(*, actor: Actor, action: str, outcome: str, object_type: str | None,
                  object_id: Any, case_id: Any, details: dict | None,
                  status_code: int | None = None) -> dict[str, Any]:
    """Validate and clip to the column sizes, so what we hash is exactly what is stored."""
    if not _ACTION.fullmatch(action) or len(action) > _length("action"):
        raise ValueError(f"audit action must be a short dotted verb like 'case.read', not {action!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"audit outcome must be one of {OUTCOMES}, not {outcome!r}")
    details_text = None
    if details:
        details_text = json.dumps(details, sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=True, default=str)
        if len(details_text) > DETAILS_MAX_CHARS:
            raise ValueError(f"audit details take {len(details_text)} characters; "
                             f"the limit is {DETAILS_MAX_CHARS}: record ids, not contents")
    return {
        "user_id": actor.user_id,
        "username": _clip(actor.username, "username"),
        "agency_id": actor.agency_id,
        "action": action,
        "object_type": _clip(object_type, "object_type"),
        "object_id": _clip(None if object_id is None else str(object_id), "object_id"),
        "case_id": None if case_id is None else int(case_id),
        "outcome": outcome,
        "status_code": status_code,
        "ip": _clip(actor.ip, "ip"),
        "user_agent": _clip(actor.user_agent, "user_agent"),
        "details": details_text,
    }


def _length(column: str) -> int:
    return AuditEvent.__table__.c[column].type.length


def _clip(value: str | None, column: str) -> str | None:
    if not value:
        return None
    return value.replace("\x00", "")[: _length(column)]  # PostgreSQL text refuses NUL


def _append(session: Session, values: dict[str, Any]) -> AuditEvent:
    _lock_chain(session)
    head = session.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    values = dict(
        values,
        seq=head.seq + 1 if head else 1,
        prev_hash=head.hash if head else GENESIS_HASH,
        at=datetime.now(UTC),  # taken under the lock, so time follows seq
    )
    event = AuditEvent(**values, hash=compute_hash(values))
    session.add(event)
    session.flush()
    return event


def _lock_chain(session: Session) -> None:
    dialect = session.get_bind(mapper=AuditEvent.__mapper__).dialect.name
    if dialect == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(CHAIN_LOCK_KEY)))
    elif dialect == "sqlite":
        session.execute(text("UPDATE audit_events SET seq = seq WHERE 0"))


def _append_alone(values: dict[str, Any]) -> AuditEvent:
    current = db.session()
    holder = current.info.get(_CHAIN_HOLDER)
    if holder is not None and holder.is_active and current.get_transaction() is holder:
        # It would wait for a lock its own caller holds: forever on PostgreSQL.
        raise RuntimeError("record_now() while the current transaction holds the audit chain: "
                           "commit or roll back first")
    with Session(db.engine, expire_on_commit=False) as session, session.begin():
        return _append(session, values)


def _note_recorded() -> None:
    """Tell the request hook a service audited this request (reset per request)."""
    if has_app_context():
        g.audit_recorded = True


# --- checking the chain -------------------------------------------------------------------

@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int  # events checked and found sound (all of them when ok)
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    broken_seq: int | None = None
    broken_id: int | None = None
    problem: str | None = None

    @property
    def message(self) -> str:
        if self.ok:
            return f"audit trail intact: {self.count} events"
        return (f"audit trail BROKEN at seq {self.broken_seq} (id {self.broken_id}): "
                f"{self.problem}")


def chain_length() -> int:
    """Highest seq: the number of events when the chain is sound (an index lookup, not a count)."""
    with db.engine.connect() as conn:
        return conn.execute(select(func.max(AuditEvent.seq))).scalar() or 0


def verify_chain(*, batch_size: int = 1000,
                 progress: Callable[[int], Any] | None = None) -> VerifyResult:
    """Walk the trail in seq order and stop at the first broken link.

    Reads in keyset batches on a connection of its own, in constant memory;
    `progress(n)` is called after each batch with the number of rows read.
    """
    table = AuditEvent.__table__
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    last_seq: int | None = None
    with db.engine.connect() as conn:
        while True:
            query = select(table).order_by(table.c.seq).limit(batch_size)
            if last_seq is not None:
                query = query.where(table.c.seq > last_seq)
            rows = conn.execute(query).mappings().all()
            for row in rows:
                problem = _link_problem(row, expected_seq, prev_hash)
                if problem:
                    return VerifyResult(ok=False, count=checked, head_seq=expected_seq - 1,
                                        head_hash=prev_hash, broken_seq=row["seq"],
                                        broken_id=row["id"], problem=problem)
                checked += 1
                expected_seq += 1
                prev_hash = row["hash"]
            if progress is not None and rows:
                progress(len(rows))
            if len(rows) < batch_size:
                break
            last_seq = rows[-1]["seq"]
    return VerifyResult(ok=True, count=checked, head_seq=expected_seq - 1, head_hash=prev_hash)


def _link_problem(row: Mapping[str, Any], expected_seq: int, prev_hash: str) -> str | None:
    seq = row["seq"]
    if seq != expected_seq:
        if seq > expected_seq:
            missing = (f"seq {expected_seq}" if seq == expected_seq + 1
                       else f"seq {expected_seq}..{seq - 1}")
            return f"seq gap: {missing} missing (events deleted)"
        return f"seq out of order: expected {expected_seq} (an event was inserted)"
    if row["prev_hash"] != prev_hash:
        before = "the genesis value" if seq == 1 else f"the hash of seq {seq - 1}"
        return (f"prev_hash mismatch: does not match {before} "
                "(an event was deleted, inserted or rewritten before this one)")
    if compute_hash(row) != row["hash"]:
        return "hash mismatch: the event was edited after it was written"
    return None


# --- reading the trail --------------------------------------------------------------------

@dataclass(frozen=True)
class AuditFilters:
    username: str | None = None
    case_id: int | None = None
    action: str | None = None  # prefix: "login." matches login.success and login.failure
    outcome: str | None = None
    date_from: date | None = None  # inclusive, UTC days
    date_to: date | None = None  # inclusive

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> AuditFilters:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})

    def as_args(self) -> dict[str, str]:
        """The filters that are set, as text (for links and the audit record itself)."""
        return {k: str(v) for k, v in asdict(self).items() if v not in (None, "")}


@dataclass(frozen=True)
class AuditPage:
    items: list[AuditEvent]
    page: int
    per_page: int
    has_next: bool

    @property
    def has_prev(self) -> bool:
        return self.page > 1


EXPORT_COLUMNS = (
    "seq", "at", "username", "user_id", "agency_id", "action", "object_type", "object_id",
    "case_id", "outcome", "status_code", "ip", "user_agent", "details", "prev_hash", "hash",
)
MAX_PER_PAGE = 200


def review(*, actor: Actor, filters: AuditFilters, page: int = 1,
           per_page: int = 50) -> AuditPage:
    """One page of the trail the actor may read, newest first. The look is itself audited."""
    _require_reviewer(actor)
    page, per_page = max(page, 1), min(max(per_page, 1), MAX_PER_PAGE)
    # Record and commit first: the chain lock is not held during the search.
    record(actor=actor, action="audit.review", object_type="audit",
           details={"filters": filters.as_args(), "page": page})
    db.session.commit()
    query = _filtered(select(AuditEvent), actor, filters).order_by(AuditEvent.seq.desc())
    items = list(db.session.scalars(query.limit(per_page + 1).offset((page - 1) * per_page)))
    return AuditPage(items=items[:per_page], page=page, per_page=per_page,
                     has_next=len(items) > per_page)


def export(*, actor: Actor, filters: AuditFilters,
           batch_size: int = 500) -> Iterator[tuple[Any, ...]]:
    """Header row, then every matching event newest first, read in batches as consumed.

    Authorised and audited now, when called, not when the rows are first read.
    """
    _require_reviewer(actor)
    record(actor=actor, action="audit.export", object_type="audit",
           details={"filters": filters.as_args()})
    db.session.commit()
    columns = [AuditEvent.__table__.c[name] for name in EXPORT_COLUMNS]
    return _export_rows(_filtered(select(*columns), actor, filters), batch_size)


def _export_rows(query: Select, batch_size: int) -> Iterator[tuple[Any, ...]]:
    yield EXPORT_COLUMNS
    before: int | None = None
    while True:
        batch_query = query if before is None else query.where(AuditEvent.seq < before)
        rows = db.session.execute(
            batch_query.order_by(AuditEvent.seq.desc()).limit(batch_size)
        ).all()
        for row in rows:
            yield tuple(format_at(row.at) if name == "at" else getattr(row, name)
                        for name in EXPORT_COLUMNS)
        if len(rows) < batch_size:
            return
        before = rows[-1].seq


def _require_reviewer(actor: Actor) -> None:
    if not policy.can_review(actor):
        raise Forbidden("Only admins and supervisors may review the audit trail.")


def _filtered(query: Select, actor: Actor, filters: AuditFilters) -> Select:
    query = policy.visible_events(query, actor)
    if filters.username:
        query = query.where(AuditEvent.username == filters.username)
    if filters.case_id is not None:
        query = query.where(AuditEvent.case_id == filters.case_id)
    if filters.action:
        query = query.where(AuditEvent.action.startswith(filters.action, autoescape=True))
    if filters.outcome:
        query = query.where(AuditEvent.outcome == filters.outcome)
    if filters.date_from:
        query = query.where(AuditEvent.at >= _day_start(filters.date_from))
    if filters.date_to:
        query = query.where(AuditEvent.at < _day_start(filters.date_to + timedelta(days=1)))
    return query


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)
