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
from datetime import date
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update

from taskforce.accounts.models import utcnow
from taskforce.extensions import db
from taskforce.graph.models import ENTITY_KINDS, Entity, GraphOutbox, Link

log = logging.getLogger(__name__)

# Key of the PostgreSQL advisory lock held by the one drainer ("tfgraph" in ASCII).
DRAIN_LOCK_KEY = 0x7466677261706800
# After the graph engine could not be reached, writes made in-process (the embedded
# default) do not try again for this long; the scheduled drain and the CLI always try.
BACKOFF_SECONDS = 15.0
ERROR_MAX = 2000

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

        celery = current_app.extensions.get("celery")
        eager = celery is None or bool(celery.conf.task_always_eager)
        if eager and _backing_off():
            log.info("graph outbox: graph engine recently unreachable; rows wait for the next drain")
            return
        tasks.drain_outbox.delay()
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

    memberships = sorted(entity.case_links, key=lambda ce: ce.case_id)
    if shield is None:
        shield = policy.shields([entity.id]).get(entity.id) or {}
    labels = []
    for ce in memberships:
        if entity.is_survivor:
            labels.append(entity.pseudonym)
        elif ce.case_id in shield:
            labels.append(policy.shielded_label(entity, shield[ce.case_id]))
        else:
            labels.append(ce.label or ENTITY_KINDS.get(entity.kind, entity.kind))
    day = today or date.today()
    return {
        "id": entity_node_id(entity.id),
        "kind": entity.kind,
        "label": entity.pseudonym if entity.is_survivor
        else ENTITY_KINDS.get(entity.kind, entity.kind),
        "cases": [ce.case_id for ce in memberships],
        "case_labels": labels,
        "survivor": entity.is_survivor,
        "minor": any(ce.minor_on(day) for ce in memberships),
    }


def entity_rows(entities: list[Entity], *, today: date | None = None) -> list[dict[str, Any]]:
    """``entity_row`` for many, with their shields looked up at once."""
    from taskforce.graph import policy

    shields = policy.shields(e.id for e in entities)
    return [entity_row(e, today=today, shield=shields.get(e.id) or {}) for e in entities]


def link_row(link: Link) -> dict[str, Any]:
    return {
        "id": link_rel_id(link.id),
        "type": link.type,
        "source": entity_node_id(link.source_id),
        "target": entity_node_id(link.target_id),
        "cases": [link.case_id],
        "first_seen": link.first_seen.isoformat() if link.first_seen else None,
        "last_seen": link.last_seen.isoformat() if link.last_seen else None,
        "confidence": float(link.confidence),
        "count": int(link.count),
        "amount": float(link.amount) if link.amount is not None else None,
    }


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


def drain(*, batch: int = 1000, max_batches: int = 1000) -> DrainResult:
    """Project what the outbox names, batch by batch, until it is empty or a batch fails."""
    batch = max(1, int(batch))
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
    transaction is closed before returning."""
    try:
        rows = db.session.execute(
            select(GraphOutbox.id, GraphOutbox.op, GraphOutbox.object_id)
            .where(GraphOutbox.processed_at.is_(None))
            .order_by(GraphOutbox.id).limit(batch)).all()
        if not rows:
            return None
        entity_ids = sorted({r.object_id for r in rows if r.op.endswith("_entity")})
        link_ids = sorted({r.object_id for r in rows if r.op.endswith("_link")})
        today = date.today()
        # a merged-away entity is gone from the graph (its links moved to the one kept)
        entities = {e.id: e for e in db.session.scalars(
            select(Entity).where(Entity.id.in_(entity_ids),
                                 Entity.merged_into_id.is_(None)))} if entity_ids else {}
        links = {lk.id: lk for lk in db.session.scalars(
            select(Link).where(Link.id.in_(link_ids)))} if link_ids else {}
        return _Batch(
            ids=[r.id for r in rows],
            upsert_entities=entity_rows([entities[i] for i in entity_ids if i in entities],
                                        today=today),
            upsert_links=[link_row(links[i]) for i in link_ids if i in links],
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
    db.session.execute(update(GraphOutbox).where(GraphOutbox.id.in_(ids))
                       .values(processed_at=utcnow()))
    db.session.commit()


def _record_failure(ids: list[int], error: str) -> None:
    try:
        db.session.execute(update(GraphOutbox).where(GraphOutbox.id.in_(ids))
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
