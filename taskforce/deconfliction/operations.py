"""Event (operation) deconfliction: the operations half of the deconfliction
service (service.py holds the target index and the hit workflow both share).

Plain functions with keyword-only arguments and the actor passed in; validated
before anything is written, audited in the same transaction, committed once.

Submitting (`submit`)
    An investigator, supervisor or coordinator plans an operation for their own
    agency: kind, place (coordinates, optionally with the address text they were
    taken from: no geocoding here), radius, start and end, point of contact,
    whether undercover officers are present, and optionally the case it belongs to
    (then contribute access to that case is needed). It is checked at once against
    every live operation of every *other* agency: windows that overlap, and
    centres closer than the sum of the radii. Candidates come from index seeks on
    (H3 cell, UTC day) for the cells of the new disc and the days of its window
    (geo.py; `operation_cells`); each is then checked exactly. Each conflict is a hit of kind "operation" in the one workflow
    (service.py), numbered and notified to both sides and the coordinators at
    once, in the app and by email (number and link only).

What a hit tells the other side
    Its agency, point of contact, the kind of operation and its time window.
    Never the address, the coordinates, the radius, the name or the case.

Expiry
    An operation stops hitting when its window ends or it is cancelled (every
    lookup asks ends_at > now, and cancelling deletes its cells). `purge` deletes
    the cells of ended operations and, `KEEP_DAYS` after their end, the
    operations themselves (hits keep their snapshots).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any

from sqlalchemy import delete, func, select, text, update

from taskforce.accounts.models import User
from taskforce.accounts.permissions import Actor
from taskforce.audit import service as audit
from taskforce.deconfliction import geo, policy
from taskforce.deconfliction import service as core
from taskforce.deconfliction.models import (
    HIT_KINDS,
    OPERATION_KINDS,
    Hit,
    HitEvent,
    Operation,
    OperationCell,
    TargetRegistration,
)
from taskforce.errors import Conflict, Forbidden, NotFound
from taskforce.extensions import db
from taskforce.investigations.service import WRITE, get_case_or_404
from taskforce.validation import FieldErrors as _Errors
from taskforce.validation import as_id as _as_id

__all__ = [
    "cancel",
    "dashboard",
    "find_conflicts",
    "get_operation",
    "list_operations",
    "purge",
    "submit",
    "upcoming",
]

WINDOW_MAX = timedelta(days=14)  # longer surveillance is entered as consecutive operations
AHEAD_MAX = timedelta(days=400)  # how far ahead an operation may be planned
KEEP_DAYS = 30  # ended operations are deleted this long after their end
UPCOMING_HOURS = 72
NAME_MAX = 200
ADDRESS_MAX = 500
LOOKUP_CHUNK = 400  # cells per IN (...) query
PER_PAGE_MAX = 200
_LOCK_KEY = 0x0DEC_0E0E  # PostgreSQL advisory lock: one operation submission at a time

_NOT_FOUND = "No such operation, or it is not one of yours."


# --------------------------------------------------------------------------- input

def _number(errors: _Errors, name: str, value: Any, low: float, high: float) -> float | None:
    if value in (None, ""):
        errors.add(name, "Required.")
        return None
    if isinstance(value, bool):
        errors.add(name, "Must be a number.")
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        errors.add(name, "Must be a number.")
        return None
    if not math.isfinite(number) or not low <= number <= high:
        errors.add(name, f"Must be between {low:g} and {high:g}.")
        return None
    return number


def _when(errors: _Errors, name: str, value: Any) -> datetime | None:
    """An ISO 8601 time with its zone (Z or an offset); a time without one is refused
    rather than guessed, since an hour's error puts two teams at one door."""
    if value in (None, ""):
        errors.add(name, "Required.")
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        raw = value.strip()
        if raw.endswith(("Z", "z")):
            raw = raw[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            errors.add(name, "Must be a date and time (ISO 8601, e.g. 2026-05-01T21:00Z).")
            return None
    else:
        errors.add(name, "Must be a date and time (ISO 8601).")
        return None
    if parsed.tzinfo is None:
        errors.add(name, "Give the time zone (Z for UTC, or an offset such as -05:00).")
        return None
    return parsed.astimezone(UTC)


def _flag(errors: _Errors, name: str, value: Any) -> bool:
    if value in (None, "", False, 0):
        return False
    if value in (True, 1):
        return True
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on", "0",
                                                            "false", "no", "off"}:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    errors.add(name, "Must be true or false.")
    return False


def _poc(errors: _Errors, actor: Actor, raw: Any) -> dict[str, Any]:
    """The point of contact: given (name + phone/email, or a user_id), else the submitter."""
    if raw in (None, {}):
        user = db.session.get(User, actor.user_id)
        return {"user_id": user.id, "name": user.full_name, "phone": "", "email": user.email}
    return core._poc(errors, None, raw)  # the case is read only when raw is empty


# --------------------------------------------------------------------------- submit

@dataclass
class SubmitResult:
    operation: Operation
    hits: list[Hit]


def submit(*, actor: Actor, kind: Any, latitude: Any, longitude: Any, radius_m: Any,
           starts_at: Any, ends_at: Any, case_id: Any = None, name: Any = "",
           address: Any = "", undercover: Any = False, poc: Any = None) -> SubmitResult:
    """Plan an operation for the actor's agency and check it against every other
    agency's live operations; conflicts become hits, notified at once."""
    if not policy.can_submit_operation(actor):
        raise Forbidden("Your role does not allow planning operations.")
    if actor.agency_id is None:
        raise Forbidden("Only a user of an agency plans operations.")
    case = None
    if case_id not in (None, ""):
        case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE,
                               attempt="deconfliction.operation.submit")
        if case.status == "closed":
            raise Conflict("This case is closed; reopen it before planning an operation.")
    errors = _Errors()
    kind = errors.choice("kind", kind, OPERATION_KINDS)
    lat = _number(errors, "latitude", latitude, -90, 90)
    lon = _number(errors, "longitude", longitude, -180, 180)
    radius = _number(errors, "radius_m", radius_m, geo.RADIUS_MIN_M, geo.RADIUS_MAX_M)
    start = _when(errors, "starts_at", starts_at)
    end = _when(errors, "ends_at", ends_at)
    name = errors.text("name", name, max_len=NAME_MAX, required=False)
    address = errors.text("address", address, max_len=ADDRESS_MAX, required=False)
    undercover = _flag(errors, "undercover", undercover)
    contact = _poc(errors, actor, poc)
    at = core.now()
    if start and end:
        if end <= start:
            errors.add("ends_at", "Must be after the start.")
        elif end - start > WINDOW_MAX:
            errors.add("ends_at", f"An operation lasts at most {WINDOW_MAX.days} days; enter "
                       "a longer one as consecutive operations.")
        if end <= at:
            errors.add("ends_at", "This window has already ended.")
        if start > at + AHEAD_MAX:
            errors.add("starts_at", f"At most {AHEAD_MAX.days} days ahead.")
    errors.raise_if_any()

    _serialize_submissions()
    op = Operation(kind=kind, name=name, agency_id=actor.agency_id,
                   case_id=case.id if case else None, latitude=lat, longitude=lon,
                   radius_m=round(radius), address=address, starts_at=start, ends_at=end,
                   undercover=undercover, poc_user_id=contact["user_id"],
                   poc_name=contact["name"], poc_phone=contact["phone"],
                   poc_email=contact["email"], created_by_id=actor.user_id, created_at=at)
    cells = geo.disc_cells(lat, lon, op.radius_m)
    op.cells = [OperationCell(cell=c, day=d, starts_at=start, ends_at=end,
                              agency_id=op.agency_id)
                for c in cells for d in geo.days_touched(start, end)]
    db.session.add(op)
    db.session.flush()
    others = find_conflicts(latitude=lat, longitude=lon, radius_m=op.radius_m,
                            starts_at=start, ends_at=end, now=at, cells=cells,
                            exclude_agency_id=op.agency_id)
    hits = _create_hits(actor, op, others, at=at)
    op.hit_count = len(hits)
    audit.record(actor=actor, action="deconfliction.operation.submit", object_type="operation",
                 object_id=op.id, case_id=op.case_id,
                 details={"kind": kind, "undercover": undercover, "cells": len(cells),
                          "hits": [h.number for h in hits]})
    db.session.commit()
    return SubmitResult(operation=op, hits=hits)


def _serialize_submissions() -> None:
    """Two operations submitted in the same instant must still see each other: on
    PostgreSQL one submission at a time holds a transaction lock (SQLite already
    has a single writer)."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})


def find_conflicts(*, latitude: float, longitude: float, radius_m: float, starts_at: datetime,
                   ends_at: datetime, now: datetime, cells: list[int] | None = None,
                   exclude_agency_id: int | None = None) -> list[tuple[Operation, float]]:
    """Live operations (of other agencies) whose window overlaps and whose disc meets
    this one, with their distance in metres. Index seeks on (cell, day), then the
    exact test on the candidates; never a scan."""
    cells = cells if cells is not None else geo.disc_cells(latitude, longitude, radius_m)
    live_from = max(starts_at, now)
    if live_from >= ends_at:
        return []
    days = geo.days_touched(live_from, ends_at)
    ids: set[int] = set()
    step = max(1, LOOKUP_CHUNK // len(days))
    for i in range(0, len(cells), step):
        query = select(OperationCell.operation_id).where(
            OperationCell.cell.in_(cells[i:i + step]), OperationCell.day.in_(days),
            OperationCell.ends_at > live_from, OperationCell.starts_at < ends_at)
        if exclude_agency_id is not None:
            query = query.where(OperationCell.agency_id != exclude_agency_id)
        ids.update(db.session.scalars(query))
    if not ids:
        return []
    near: dict[int, float] = {}
    for row in db.session.execute(select(
            Operation.id, Operation.latitude, Operation.longitude, Operation.radius_m)
            .where(Operation.id.in_(sorted(ids)), Operation.cancelled_at.is_(None))):
        d = geo.distance_m(latitude, longitude, row.latitude, row.longitude)
        if d < radius_m + row.radius_m:
            near[row.id] = d
    if not near:
        return []
    found = [(op, near[op.id]) for op in db.session.scalars(
        select(Operation).where(Operation.id.in_(sorted(near))))]
    found.sort(key=lambda pair: (pair[0].starts_at, pair[0].id))
    return found


def _side(prefix: str, op: Operation) -> dict[str, Any]:
    return {f"{prefix}_operation_id": op.id, f"{prefix}_agency_id": op.agency_id,
            f"{prefix}_case_id": op.case_id, f"{prefix}_identifier_kind": "operation",
            f"{prefix}_operation_kind": op.kind, f"{prefix}_starts_at": op.starts_at,
            f"{prefix}_ends_at": op.ends_at, f"{prefix}_poc_user_id": op.poc_user_id,
            f"{prefix}_poc_name": op.poc_name, f"{prefix}_poc_phone": op.poc_phone or "",
            f"{prefix}_poc_email": op.poc_email or ""}


def _create_hits(actor: Actor, op: Operation, others: list[tuple[Operation, float]], *,
                 at: datetime) -> list[Hit]:
    """One hit per pair of operations (side a: the new one), notified in the same
    transaction (mail after the commit), through the shared workflow."""
    hits = []
    for other, distance in others:
        key = f"op:{min(op.id, other.id)}:{max(op.id, other.id)}"
        if db.session.scalar(select(Hit.id).where(Hit.pair_key == key)) is not None:
            continue
        # closeness in place: 1 for the same centre, towards 0 as the discs barely touch
        score = max(0.0, min(1.0, 1.0 - distance / (op.radius_m + other.radius_m)))
        hit = Hit(number=core._next_number(at.year), pair_key=key, kind="operation",
                  score=round(score, 3), status="new", created_at=at, updated_at=at,
                  **_side("a", op), **_side("b", other))
        hit.events.append(HitEvent(at=at, user_id=actor.user_id, agency_id=actor.agency_id,
                                   action="created", to_status="new"))
        db.session.add(hit)
        hits.append(hit)
    if hits:
        db.session.flush()
        planners = {op.id: op.created_by_id} | {o.id: o.created_by_id for o, _ in others}
        core._notify(hits, at=at, also={
            h.id: [u for u in (planners.get(h.a_operation_id), planners.get(h.b_operation_id))
                   if u is not None] for h in hits})
        db.session.execute(update(Operation).where(
            Operation.id.in_([o.id for o, _ in others]))
            .values(hit_count=Operation.hit_count + 1))
    return hits


# --------------------------------------------------------------------------- read

def _load(actor: Actor, operation_id: Any, *, act: bool, attempt: str) -> Operation:
    row_id = _as_id(operation_id)
    op = db.session.get(Operation, row_id) if row_id is not None else None
    level = policy.operation_access(actor, op) if op is not None else 0
    if op is not None and level >= (WRITE if act else policy.READ):
        return op
    audit.record_now(actor=actor, action=attempt, outcome="denied", object_type="operation",
                     object_id=operation_id)
    if op is not None and level >= policy.READ:
        raise Forbidden("Only who planned it, its point of contact and its agency's "
                        "supervisors change an operation.")
    raise NotFound(_NOT_FOUND)


def get_operation(*, actor: Actor, operation_id: Any) -> Operation:
    op = _load(actor, operation_id, act=False, attempt="deconfliction.operation.read")
    audit.record(actor=actor, action="deconfliction.operation.read", object_type="operation",
                 object_id=op.id, case_id=op.case_id)
    db.session.commit()
    return op


def operation_hits(*, actor: Actor, operation: Operation) -> list[core.HitView]:
    """The hits of an operation the actor may open (as the actor sees them)."""
    hits = db.session.scalars(select(Hit).where(
        (Hit.a_operation_id == operation.id) | (Hit.b_operation_id == operation.id))
        .order_by(Hit.created_at.desc()))
    return core.hit_views(actor=actor, hits=hits)


@dataclass
class OperationList:
    items: list[Operation]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def list_operations(*, actor: Actor, when: Any = "upcoming", page: Any = 1,
                    per_page: Any = 50) -> OperationList:
    """The operations the actor may open: upcoming (not ended, not cancelled) or all."""
    errors = _Errors()
    when = errors.choice("when", when or "upcoming", ("upcoming", "all"))
    page_n = errors.integer("page", page, required=False) or 1
    per_page_n = errors.integer("per_page", per_page, required=False) or 50
    if not 1 <= per_page_n <= PER_PAGE_MAX:
        errors.add("per_page", f"Must be between 1 and {PER_PAGE_MAX}.")
    errors.raise_if_any()
    query = policy.visible_operations(select(Operation), actor)
    if when == "upcoming":
        query = query.where(Operation.ends_at > core.now(), Operation.cancelled_at.is_(None))
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = list(db.session.scalars(query.order_by(Operation.starts_at, Operation.id)
                                    .limit(per_page_n).offset((page_n - 1) * per_page_n)))
    audit.record(actor=actor, action="deconfliction.operation.list", object_type="operation",
                 details={"when": when, "page": page_n, "returned": [o.id for o in items]})
    db.session.commit()
    return OperationList(items=items, total=total, page=page_n, per_page=per_page_n)


# --------------------------------------------------------------------------- change

def cancel(*, actor: Actor, operation_id: Any) -> Operation:
    """Call an operation off: it stops hitting at once (its cells go)."""
    op = _load(actor, operation_id, act=True, attempt="deconfliction.operation.cancel")
    if op.cancelled_at is not None:
        raise Conflict("This operation is already cancelled.")
    at = core.now()
    op.cancelled_at = at
    db.session.execute(delete(OperationCell).where(OperationCell.operation_id == op.id))
    audit.record(actor=actor, action="deconfliction.operation.cancel", object_type="operation",
                 object_id=op.id, case_id=op.case_id)
    db.session.commit()
    return op


def purge(*, actor: Actor | None = None, batch: int = 5000) -> dict[str, int]:
    """Cells of ended or cancelled operations; operations ended KEEP_DAYS ago."""
    actor = actor or Actor.system("deconfliction")
    at = core.now()
    cells = db.session.execute(delete(OperationCell).where(
        OperationCell.ends_at <= at)).rowcount or 0
    cancelled = select(Operation.id).where(Operation.cancelled_at.is_not(None))
    cells += db.session.execute(delete(OperationCell).where(
        OperationCell.operation_id.in_(cancelled))).rowcount or 0
    cutoff = at - timedelta(days=KEEP_DAYS)
    operations = 0
    while True:
        ids = list(db.session.scalars(select(Operation.id).where(
            Operation.ends_at <= cutoff).order_by(Operation.id).limit(batch)))
        if not ids:
            break
        for side in ("a", "b"):
            col = getattr(Hit, f"{side}_operation_id")
            db.session.execute(update(Hit).where(col.in_(ids)).values({col: None}))
        db.session.execute(delete(OperationCell).where(OperationCell.operation_id.in_(ids)))
        db.session.execute(delete(Operation).where(Operation.id.in_(ids)))
        operations += len(ids)
        if len(ids) < batch:
            break
    audit.record(actor=actor, action="deconfliction.operation.purge", object_type="operation",
                 details={"cells": cells, "operations": operations})
    db.session.commit()
    return {"cells": cells, "operations": operations}


# --------------------------------------------------------------------------- dashboard

AGE_BUCKETS = (("under_1d", timedelta(days=1)), ("1_7d", timedelta(days=7)),
               ("7_30d", timedelta(days=30)), ("over_30d", None))
WEEKS = 12


def upcoming(*, hours: int = UPCOMING_HOURS, at: datetime | None = None) -> list[Operation]:
    """Live operations starting within `hours` (or under way)."""
    at = at or core.now()
    return list(db.session.scalars(select(Operation).where(
        Operation.cancelled_at.is_(None), Operation.ends_at > at,
        Operation.starts_at < at + timedelta(hours=hours))
        .order_by(Operation.starts_at, Operation.id).limit(2000)))


def _bucket(age: timedelta) -> str:
    for name, limit in AGE_BUCKETS:
        if limit is None or age < limit:
            return name
    return AGE_BUCKETS[-1][0]


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


@dataclass
class Dashboard:
    at: datetime
    open_by_agency: list[dict[str, Any]]
    open_total: int
    upcoming: list[dict[str, Any]]
    weeks: list[dict[str, Any]]
    totals: dict[str, Any]


def dashboard(*, actor: Actor) -> Dashboard:
    """The coordinator's picture: open hits by age and agency, operations in the next
    72 hours, hit rates and time to acknowledge, week by week (the last 12)."""
    if not policy.is_coordinator(actor):
        raise Forbidden("The deconfliction dashboard is for coordinators.")
    at = core.now()
    # open hits by agency (each side counts for its agency) and age
    rows: dict[str, dict[str, int]] = defaultdict(lambda: {b: 0 for b, _ in AGE_BUCKETS})
    open_hits = list(db.session.scalars(select(Hit).where(Hit.status != "resolved")))
    for hit in open_hits:
        bucket = _bucket(at - hit.created_at)
        for agency in {hit.a_agency.name, hit.b_agency.name}:
            rows[agency][bucket] += 1
    open_by_agency = [{"agency": name, **counts, "total": sum(counts.values())}
                      for name, counts in sorted(rows.items(), key=lambda kv: (
                          -sum(kv[1].values()), kv[0]))]
    # operations of the next 72 hours, and whether they are in an open conflict
    ops = upcoming(at=at)
    conflicted: set[int] = set()
    if ops:
        ids = [o.id for o in ops]
        for a_id, b_id in db.session.execute(select(Hit.a_operation_id, Hit.b_operation_id)
                                             .where(Hit.kind == "operation",
                                                    Hit.status != "resolved",
                                                    (Hit.a_operation_id.in_(ids))
                                                    | (Hit.b_operation_id.in_(ids)))):
            conflicted.update(x for x in (a_id, b_id) if x is not None)
    upcoming_out = [{"id": o.id, "kind": o.kind, "kind_label": OPERATION_KINDS[o.kind],
                     "agency": o.agency.name, "latitude": o.latitude, "longitude": o.longitude,
                     "radius_m": o.radius_m, "starts_at": o.starts_at, "ends_at": o.ends_at,
                     "undercover": o.undercover,
                     "poc": {"name": o.poc_name, "phone": o.poc_phone or "",
                             "email": o.poc_email or ""},
                     "in_conflict": o.id in conflicted} for o in ops]
    # week by week: hits found (by kind), operations and registrations, hit rates, time
    # to acknowledge (hours)
    week0 = (at - timedelta(days=at.weekday())).replace(hour=0, minute=0, second=0,
                                                        microsecond=0)
    starts = [week0 - timedelta(weeks=WEEKS - 1 - i) for i in range(WEEKS)]
    since = starts[0]

    def week_of(t: datetime) -> int | None:
        i = (t - since) // timedelta(weeks=1)
        return i if 0 <= i < WEEKS else None

    weeks = [{"week": s.date().isoformat(), "hits": {k: 0 for k in HIT_KINDS},
              "operations": 0, "operations_hit": 0, "registrations": 0, "ack_hours": []}
             for s in starts]
    for kind, created, acked in db.session.execute(select(
            Hit.kind, Hit.created_at, Hit.acknowledged_at).where(Hit.created_at >= since)):
        i = week_of(created)
        if i is None:
            continue
        weeks[i]["hits"][kind] += 1
        if acked is not None:
            weeks[i]["ack_hours"].append((acked - created).total_seconds() / 3600)
    for created, hit_count in db.session.execute(select(
            Operation.created_at, Operation.hit_count).where(Operation.created_at >= since)):
        i = week_of(created)
        if i is not None:
            weeks[i]["operations"] += 1
            weeks[i]["operations_hit"] += 1 if hit_count else 0
    for day, n in db.session.execute(select(
            func.date(TargetRegistration.registered_at), func.count())
            .where(TargetRegistration.registered_at >= since)
            .group_by(func.date(TargetRegistration.registered_at))):
        d = datetime.fromisoformat(str(day)).replace(tzinfo=at.tzinfo)
        i = week_of(d)
        if i is not None:
            weeks[i]["registrations"] += n
    all_ack: list[float] = []
    for w in weeks:
        ack = w.pop("ack_hours")
        all_ack += ack
        target_hits = sum(v for k, v in w["hits"].items() if k != "operation")
        w["operation_hit_rate"] = (round(w["operations_hit"] / w["operations"], 3)
                                   if w["operations"] else None)
        w["target_hits_per_1000"] = (round(1000 * target_hits / w["registrations"], 2)
                                     if w["registrations"] else None)
        w["ack_median_hours"] = round(median(ack), 2) if ack else None
        w["ack_p90_hours"] = round(_pct(ack, 90), 2) if ack else None
    ops_n = sum(w["operations"] for w in weeks)
    totals = {
        "open_hits": len(open_hits),
        "operations": ops_n,
        "operation_hit_rate": (round(sum(w["operations_hit"] for w in weeks) / ops_n, 3)
                               if ops_n else None),
        "ack_median_hours": round(median(all_ack), 2) if all_ack else None,
        "ack_p90_hours": round(_pct(all_ack, 90), 2) if all_ack else None,
        "unacknowledged": sum(1 for h in open_hits if h.acknowledged_at is None),
    }
    audit.record(actor=actor, action="deconfliction.dashboard.read", object_type="deconfliction",
                 details={"upcoming": len(upcoming_out), "open_hits": len(open_hits)})
    db.session.commit()
    return Dashboard(at=at, open_by_agency=open_by_agency, open_total=len(open_hits),
                     upcoming=upcoming_out, weeks=weeks, totals=totals)


def case_choices(*, actor: Actor) -> list[tuple[int, str]]:
    """Open cases the actor may contribute to (the operation form's case list)."""
    from taskforce.investigations import policy as case_policy
    from taskforce.investigations.models import Case

    cases = db.session.scalars(case_policy.visible_cases(select(Case), actor)
                               .where(Case.status != "closed").order_by(Case.number).limit(500))
    return [(c.id, f"{c.number} {c.title}") for c in cases
            if case_policy.access(actor, c) >= WRITE]
