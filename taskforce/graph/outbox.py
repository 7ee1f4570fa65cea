"""The transactional outbox that feeds the Neo4j projection.

Writing: the service calls `enqueue()` in the same transaction as the change,
and `request_drain()` after the commit. Nothing about Neo4j can make a write
fail: if the graph engine is down, the rows wait.

Draining (`drain()`, run by tasks.drain_outbox and `flask graph drain`): read
unprocessed rows in id order, a batch at a time; for every entity and link they
name, project its *current* state from the database, or delete it from the
graph when the row is gone; then mark the batch processed. Because the payload
is read at drain time and projection.py MERGEs on stable ids, replaying a row
(twice, out of order, after a crash between the graph write and the commit)
changes nothing. On a failure the batch stays unprocessed with attempts+1 and
the error, and the next drain tries again.

Large outboxes (an import leaves tens of thousands of rows) drain at the speed
of the projection writer: a batch is DRAIN_BATCH rows; the rows naming one
object make one write; the current state is read as plain columns, a few
set-based queries per READ_CHUNK ids (never an ORM object, whose eager loads
cost more than the graph write); the batch is marked processed by id in one
transaction. What the drain writes for an object is exactly what rebuild()
writes for it (both build rows with `_node_row` and `_rel_row`).

One drainer at a time, so an older read of an entity can never overwrite a
newer one in the graph: a lock per process, plus a PostgreSQL advisory lock
across processes. A drain that finds the lock taken returns at once; the
running one keeps reading batches until the outbox is empty, so it also picks
up what was committed meanwhile.

Neither the database nor the graph is held while the other is called: the
batch is read and the transaction closed before Neo4j is written, so a slow
graph engine never blocks writers (SQLite's rollback journal would).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import func, select, update

from taskforce.accounts.models import utcnow
from taskforce.extensions import db
from taskforce.graph.models import ENTITY_KINDS, CaseEntity, Entity, GraphOutbox, Link

log = logging.getLogger(__name__)

# Key of the PostgreSQL advisory lock held by the one drainer ("tfgraph" in ASCII).
DRAIN_LOCK_KEY = 0x7466677261706800
# After the graph engine could not be reached, writes made in-process (the embedded
# default) do not try again for this long; the scheduled drain and the CLI always try.
BACKOFF_SECONDS = 15.0
ERROR_MAX = 2000
# Outbox rows read, projected and marked per batch. Large, because the cost is per
# query and per transaction far more than per row: a 200,000-row CDR import leaves
# ~19,000 rows, two batches (projection.py splits each into BATCH_SIZE transactions).
DRAIN_BATCH = 10_000

_process_lock = threading.Lock()


def entity_node_id(entity_id: int) -> str:
    return f"ent-{entity_id}"


def link_rel_id(link_id: int) -> str:
    return f"lnk-{link_id}"


# Writing ---------------------------------------------------------------------------------

def enqueue(op: str, object_id: int) -> GraphOutbox:
    """Add an outbox row to the current transaction (the caller commits)."""
    row = GraphOutbox(op=op, object_id=object_id, created_at=utcnow(), attempts=0)
    db.session.add(row)
    return row


def request_drain() -> None:
    """After a commit: have the outbox drained (in-process when Celery runs eagerly,
    else by a worker). Never raises: the rows are committed and will wait."""
    try:
        from taskforce.graph import tasks
        from taskforce.jobs import dispatch, no_broker

        if no_broker() and _backing_off():
            log.info("graph outbox: graph engine recently unreachable; rows wait for the next drain")
            return
        dispatch(tasks.drain_outbox)
    except Exception:  # a write that committed must not fail here
        log.warning("graph outbox: could not start the drain; the rows wait", exc_info=True)


def _state() -> dict[str, Any]:
    return current_app.extensions.setdefault("graph_outbox", {"down_until": 0.0,
                                                              "schema_ready": False})


def _backing_off() -> bool:
    return time.monotonic() < _state()["down_until"]


def _mark_down() -> None:
    state = _state()
    state["down_until"] = time.monotonic() + BACKOFF_SECONDS
    state["schema_ready"] = False


def _mark_up() -> None:
    _state()["down_until"] = 0.0


# What the graph holds of an entity and a link (the projection.py contract) ---------------

def entity_row(entity: Entity, *, today: date | None = None,
               shield: Mapping[int, str] | None = None) -> dict[str, Any]:
    """A node as projected. Labels are per case (``case_labels[i]`` is what case
    ``cases[i]`` calls it), so a graph question answers with a label from a case the
    reader may read, never another's; ``label`` is only the kind. A survivor, and an
    entity a survivor uses or owns in a case (``shield``, see policy.shields), is
    labelled by pseudonym: the graph engine holds no survivor identity at all (no
    name, no DOB, no identifier). ``minor`` is as of the drain; the API derives it
    again from the date of birth when it answers."""
    from taskforce.graph import policy

    if shield is None:
        shield = policy.shields([entity.id]).get(entity.id) or {}
    day = today or date.today()
    return _node_row(entity.id, entity.kind, entity.pseudonym,
                     [(ce.case_id, ce.label, ce.minor_on(day)) for ce in entity.case_links],
                     shield)


def _node_row(entity_id: int, kind: str, pseudonym: str | None,
              memberships: list[tuple[int, str, bool]],
              shield: Mapping[int, str]) -> dict[str, Any]:
    """The node of `entity_row`, from plain values: (case id, the case's label, minor
    by that case's date of birth) per case. The drain reads these in bulk, a rebuild
    from the ORM objects; both end here, so both write the same node."""
    from taskforce.graph import policy

    memberships = sorted(memberships, key=lambda m: m[0])
    kind_name = ENTITY_KINDS.get(kind, kind)
    labels = []
    for case_id, label, _minor in memberships:
        if pseudonym is not None:
            labels.append(pseudonym)
        elif case_id in shield:
            labels.append(policy.shielded_label(_Kind(kind), shield[case_id]))
        else:
            labels.append(label or kind_name)
    return {
        "id": entity_node_id(entity_id),
        "kind": kind,
        "label": pseudonym if pseudonym is not None else kind_name,
        "cases": [m[0] for m in memberships],
        "case_labels": labels,
        "survivor": pseudonym is not None,
        "minor": any(m[2] for m in memberships),
    }


class _Kind(NamedTuple):
    kind: str  # all policy.shielded_label reads of an entity


class _Membership:
    """A case membership read as plain columns: CaseEntity's own date-of-birth and
    minor logic, without loading the ORM object."""

    __slots__ = ("props",)
    dob = CaseEntity.dob
    minor_on = CaseEntity.minor_on

    def __init__(self, props: Mapping[str, Any] | None) -> None:
        self.props = props


def entity_rows(entities: list[Entity], *, today: date | None = None) -> list[dict[str, Any]]:
    """``entity_row`` for many, with their shields looked up at once."""
    from taskforce.graph import policy

    shields = policy.shields(e.id for e in entities)
    return [entity_row(e, today=today, shield=shields.get(e.id) or {}) for e in entities]


def link_row(link: Link) -> dict[str, Any]:
    return _rel_row(link.id, link.type, link.source_id, link.target_id, link.case_id,
                    link.first_seen, link.last_seen, link.confidence, link.count, link.amount)


def _rel_row(link_id: int, type_: str, source_id: int, target_id: int, case_id: int,
             first_seen: datetime | None, last_seen: datetime | None, confidence: float,
             count: int, amount: Decimal | None) -> dict[str, Any]:
    return {
        "id": link_rel_id(link_id),
        "type": type_,
        "source": entity_node_id(source_id),
        "target": entity_node_id(target_id),
        "cases": [case_id],
        "first_seen": first_seen.isoformat() if first_seen else None,
        "last_seen": last_seen.isoformat() if last_seen else None,
        "confidence": float(confidence),
        "count": int(count),
        "amount": float(amount) if amount is not None else None,
    }


# Reading in bulk (the drain): plain columns, a few queries per chunk of ids --------------

# ids per IN (...) list: well under SQLite's 32,766 bound parameters
READ_CHUNK = 2000
_LINK_COLUMNS = (Link.id, Link.type, Link.source_id, Link.target_id, Link.case_id,
                 Link.first_seen, Link.last_seen, Link.confidence, Link.count, Link.amount)


def _chunked(ids: list[int]) -> Iterator[list[int]]:
    size = READ_CHUNK
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def entity_rows_by_id(entity_ids: list[int], *,
                      today: date | None = None) -> dict[int, dict[str, Any]]:
    """The nodes of these entities as ``entity_row`` makes them, keyed by entity id;
    an id that is gone or merged away is absent. Three queries per READ_CHUNK ids
    (entities, memberships, shields) instead of an ORM object graph per entity."""
    from taskforce.graph import policy

    day = today or date.today()
    out: dict[int, dict[str, Any]] = {}
    for chunk in _chunked(sorted(set(entity_ids))):
        # a merged-away entity is gone from the graph (its links moved to the one kept)
        found = db.session.execute(
            select(Entity.id, Entity.kind, Entity.pseudonym)
            .where(Entity.id.in_(chunk), Entity.merged_into_id.is_(None))).all()
        if not found:
            continue
        live = [e.id for e in found]
        memberships: dict[int, list[tuple[int, str, bool]]] = {i: [] for i in live}
        for eid, case_id, label, props in db.session.execute(
                select(CaseEntity.entity_id, CaseEntity.case_id, CaseEntity.label,
                       CaseEntity.props).where(CaseEntity.entity_id.in_(live))):
            memberships[eid].append((case_id, label, _Membership(props).minor_on(day)))
        shields = policy.shields(live)
        for e in found:
            out[e.id] = _node_row(e.id, e.kind, e.pseudonym, memberships[e.id],
                                  shields.get(e.id) or {})
    return out


def link_rows_by_id(link_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The relationships of these links as ``link_row`` makes them, keyed by link id;
    a deleted link is absent. One query of plain columns per READ_CHUNK ids (a Link
    object would also load both endpoints, each with its memberships and identifiers)."""
    out: dict[int, dict[str, Any]] = {}
    for chunk in _chunked(sorted(set(link_ids))):
        for row in db.session.execute(select(*_LINK_COLUMNS).where(Link.id.in_(chunk))):
            out[row[0]] = _rel_row(*row)
    return out


# Draining ----------------------------------------------------------------------------------

@dataclass
class DrainResult:
    processed: int = 0  # outbox rows marked processed
    failed: int = 0  # rows left waiting after a failure (attempts + 1)
    entities: int = 0  # nodes upserted
    links: int = 0  # relationships upserted
    deleted: int = 0  # nodes and relationships removed
    batches: int = 0
    busy: bool = False  # another drainer held the lock: nothing done here
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Batch:
    ids: list[int]
    upsert_entities: list[dict]
    upsert_links: list[dict]
    delete_entities: list[str]
    delete_links: list[str]


@contextmanager
def exclusive() -> Iterator[bool]:
    """Be the one drainer (this process and, on PostgreSQL, every process).
    Yields False at once, without waiting, when another holds it."""
    if not _process_lock.acquire(blocking=False):
        yield False
        return
    try:
        if db.engine.dialect.name != "postgresql":
            yield True
            return
        with db.engine.connect() as conn:
            got = bool(conn.execute(select(func.pg_try_advisory_lock(DRAIN_LOCK_KEY))).scalar())
            conn.commit()  # a session-level lock: it outlives this transaction
            try:
                yield got
            finally:
                if got:
                    conn.execute(select(func.pg_advisory_unlock(DRAIN_LOCK_KEY)))
                    conn.commit()
    finally:
        _process_lock.release()


def pending_count() -> int:
    return db.session.scalar(select(func.count()).select_from(GraphOutbox)
                             .where(GraphOutbox.processed_at.is_(None))) or 0


def drain(*, batch: int | None = None, max_batches: int = 1000) -> DrainResult:
    """Project what the outbox names, batch by batch (DRAIN_BATCH rows unless told),
    until it is empty or a batch fails."""
    batch = max(1, int(batch or DRAIN_BATCH))
    result = DrainResult()
    with exclusive() as mine:
        if not mine:
            result.busy = True
            return result
        checked = False
        for _ in range(max_batches):
            work = _read_batch(batch)
            if work is None:
                break
            try:
                if not checked:
                    _check_reachable()
                    checked = True
                counts = _project(work)
            except Exception as exc:  # noqa: BLE001  (any failure: the rows wait)
                result.error = f"{type(exc).__name__}: {exc}"[:ERROR_MAX]
                result.failed += len(work.ids)
                _record_failure(work.ids, result.error)
                _mark_down()
                log.warning("graph outbox: %d rows wait: %s", len(work.ids), result.error)
                break
            _mark_processed(work.ids)
            _mark_up()
            result.batches += 1
            result.processed += len(work.ids)
            result.entities += counts["entities"]
            result.links += counts["links"]
            result.deleted += counts["deleted"]
            if len(work.ids) < batch:
                break
    return result


def _read_batch(batch: int) -> _Batch | None:
    """The next unprocessed rows and the current state of what they name; the read
    transaction is closed before returning.

    Many rows naming one object (an entity updated ten times, a link restated by
    every import) make one write: the state is read now, so the last row's state is
    every row's. An object that is gone is deleted, whatever its rows said."""
    try:
        rows = db.session.execute(
            select(GraphOutbox.id, GraphOutbox.op, GraphOutbox.object_id)
            .where(GraphOutbox.processed_at.is_(None))
            .order_by(GraphOutbox.id).limit(batch)).all()
        if not rows:
            return None
        entity_ids = sorted({r.object_id for r in rows if r.op.endswith("_entity")})
        link_ids = sorted({r.object_id for r in rows if r.op.endswith("_link")})
        entities = entity_rows_by_id(entity_ids)
        links = link_rows_by_id(link_ids)
        return _Batch(
            ids=[r.id for r in rows],
            upsert_entities=[entities[i] for i in entity_ids if i in entities],
            upsert_links=[links[i] for i in link_ids if i in links],
            delete_entities=[entity_node_id(i) for i in entity_ids if i not in entities],
            delete_links=[link_rel_id(i) for i in link_ids if i not in links],
        )
    finally:
        db.session.rollback()  # nothing was written; release the read


def _check_reachable() -> None:
    """Fail fast when the graph engine is down: the driver's managed transactions
    would retry for half a minute first. Also makes sure the schema exists."""
    from taskforce.graph import client, projection

    client.driver().verify_connectivity()
    state = _state()
    if not state.get("schema_ready"):
        projection.ensure_schema()
        state["schema_ready"] = True


def _project(work: _Batch) -> dict[str, int]:
    from taskforce.graph import projection

    counts = {"entities": 0, "links": 0, "deleted": 0}
    # Nodes before the relationships that join them; relationships before their nodes go.
    if work.upsert_entities:
        projection.upsert_entities(work.upsert_entities)
        counts["entities"] = len(work.upsert_entities)
    if work.upsert_links:
        projection.upsert_links(work.upsert_links)
        counts["links"] = len(work.upsert_links)
    if work.delete_links:
        projection.delete_links(work.delete_links)
        counts["deleted"] += len(work.delete_links)
    if work.delete_entities:
        projection.delete_entities(work.delete_entities)
        counts["deleted"] += len(work.delete_entities)
    return counts


def _mark_processed(ids: list[int]) -> None:
    """One transaction, a set-based UPDATE per READ_CHUNK ids. By id, never by range:
    a row with a lower id committed after the batch was read is not in it, and waits."""
    at = utcnow()
    for chunk in _chunked(ids):
        db.session.execute(update(GraphOutbox).where(GraphOutbox.id.in_(chunk))
                           .values(processed_at=at))
    db.session.commit()


def _record_failure(ids: list[int], error: str) -> None:
    try:
        for chunk in _chunked(ids):
            db.session.execute(update(GraphOutbox).where(GraphOutbox.id.in_(chunk))
                               .values(attempts=GraphOutbox.attempts + 1, last_error=error))
        db.session.commit()
    except Exception:  # the rows stay unprocessed either way
        db.session.rollback()
        log.exception("graph outbox: could not record the failure")


# Rebuilding --------------------------------------------------------------------------------

@dataclass
class RebuildResult:
    entities: int
    links: int
    outbox_marked: int


def totals() -> tuple[int, int]:
    """(entities, links) in the database: what a rebuild will project."""
    n_entities = db.session.scalar(select(func.count()).select_from(Entity)
                                   .where(Entity.merged_into_id.is_(None))) or 0
    n_links = db.session.scalar(select(func.count()).select_from(Link)) or 0
    db.session.rollback()
    return n_entities, n_links


def rebuild(*, batch: int = 1000, progress: Callable[[int], Any] | None = None) -> RebuildResult:
    """Clear the graph and project every entity, then every link, from the database.

    Outbox rows written before the rebuild began are covered by it and marked
    processed; rows written while it runs wait for the next drain.
    Raises RuntimeError when a drain is running (try again when it is done).
    """
    from taskforce.graph import projection

    batch = max(1, int(batch))
    with exclusive() as mine:
        if not mine:
            raise RuntimeError("the outbox is being drained right now; try again in a moment")
        high = db.session.scalar(select(func.max(GraphOutbox.id))) or 0
        db.session.rollback()
        _check_reachable()
        projection.clear()
        _state()["schema_ready"] = False
        projection.ensure_schema()
        _state()["schema_ready"] = True
        today = date.today()
        n_entities = 0
        for rows in _keyset(Entity, batch, lambda es: entity_rows(es, today=today),
                            Entity.merged_into_id.is_(None)):
            projection.upsert_entities(rows)
            n_entities += len(rows)
            if progress:
                progress(len(rows))
        n_links = 0
        for rows in _keyset(Link, batch, lambda lks: [link_row(lk) for lk in lks]):
            projection.upsert_links(rows)
            n_links += len(rows)
            if progress:
                progress(len(rows))
        marked = db.session.execute(
            update(GraphOutbox).where(GraphOutbox.id <= high, GraphOutbox.processed_at.is_(None))
            .values(processed_at=utcnow())).rowcount or 0
        db.session.commit()
        _mark_up()
    return RebuildResult(entities=n_entities, links=n_links, outbox_marked=marked)


def _keyset(model, batch: int, to_rows: Callable[[list[Any]], list[dict]],
            *where: Any) -> Iterator[list[dict]]:
    """Rows of `model` in id order, `batch` at a time, each read in a short transaction."""
    last = 0
    while True:
        try:
            objs = list(db.session.scalars(
                select(model).where(model.id > last, *where).order_by(model.id).limit(batch)))
            rows = to_rows(objs) if objs else []
            last = objs[-1].id if objs else last
        finally:
            db.session.rollback()
        if not rows:
            return
        yield rows
        if len(rows) < batch:
            return
