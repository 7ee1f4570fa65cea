"""Bulk registration: many identifiers into the target index at once.

``service.register_many`` (an import's identifiers, one case) and ``load_parallel``
(an index built from a large source, many cases, in worker processes;
bench/bench_target_check.py times it) both come through ``prepare`` + ``load``. Identifiers arrive normalized
(graph.identifiers); this module derives their index rows and writes them; it
checks no access and finds no matches (the service does both).

``prepare`` (pure, so it can run in worker processes) derives each row's value key,
key64, a person's blocking keys and sketch, drops repeats within the batch and
sorts the rows by key64, so a load walks the index from left to right.

``load`` writes a prepared batch on a connection, inside the caller's transaction:

* PostgreSQL, fast path: every row at ``key_slot`` 0 by ``COPY`` inside a savepoint
  (ids reserved from the sequence first when the caller wants them back; else the
  column default numbers the rows and the person blocks find theirs by (key64,
  case)). It succeeds only when none of the rows' (key64, case) is taken, i.e.
  when every row is new;
* otherwise (and always on SQLite) the careful path: the rows already holding the
  batch's key64s are read ``FOR SHARE`` (a purge cannot delete them meanwhile);
  the same (case, kind, value key, scheme) is renewed, a new value takes the next
  free slot of its (key64, case): 0 unless another value of the case shares its
  key64 (a 64-bit collision, ~N^2/2^65 per case: 2.7e-6 with 10M identifiers in one
  case). New rows go in by executemany.

No duplicate registration: the unique index (key64, case_id, key_slot) makes two
writers of one new value collide on the same slot (one fails: the caller's
Conflict), and slots stay dense (service.purge_expired renumbers after deleting
while the rows it keeps are share-locked by any writer placing a slot 1+), so a
slot-0 insert of a value that is already there at a higher slot always collides.
No missed match: lookups seek key64 and compare the full value key, whatever the slot.
"""
from __future__ import annotations

import json
import multiprocessing
import re
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from taskforce.deconfliction import matching
from taskforce.deconfliction.blind import Keyring
from taskforce.deconfliction.models import PersonBlock, TargetRegistration

LOOKUP_CHUNK = 500  # key64s per IN (...) query
CHUNK = 50_000  # rows per prepared batch in load_parallel

REG_COLUMNS = ("id", "key64", "key_slot", "kind", "value_key", "scheme", "display_hint",
               "sketch", "agency_id", "case_id", "entity_id", "poc_user_id", "poc_name",
               "poc_phone", "poc_email", "registered_by_id", "registered_at", "expires_at")
COPY_REGS = f"COPY target_registrations ({', '.join(REG_COLUMNS)}) FROM STDIN"
# the same without ids (the column default numbers them): a load that needs no ids back
COPY_REGS_NUMBERED_BY_DB = f"COPY target_registrations ({', '.join(REG_COLUMNS[1:])}) FROM STDIN"
# person blocks of rows without ids yet: by (key64, case_id), joined to their row after
STAGE_BLOCKS = ("CREATE TEMPORARY TABLE IF NOT EXISTS deconfliction_blocks_in"
                " (key64 BIGINT, case_id INTEGER, block_key VARCHAR(128))"
                " ON COMMIT DELETE ROWS")
COPY_STAGED_BLOCKS = "COPY deconfliction_blocks_in (key64, case_id, block_key) FROM STDIN"
ATTACH_STAGED_BLOCKS = (
    "INSERT INTO person_blocks (registration_id, block_key)"
    " SELECT r.id, b.block_key FROM deconfliction_blocks_in b JOIN target_registrations r"
    " ON r.key64 = b.key64 AND r.case_id = b.case_id AND r.key_slot = 0")
COPY_BLOCKS = "COPY person_blocks (registration_id, block_key) FROM STDIN"
NULL = "\\N"  # COPY text format
_SPECIAL = re.compile(r"[\\\t\n\r]")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


@dataclass(frozen=True)
class Contact:
    """Whom the other side calls about a registration."""

    user_id: int | None
    name: str
    phone: str = ""
    email: str = ""


class Entry(NamedTuple):
    """One normalized identifier to index for one case (a tuple: millions are made)."""

    kind: str
    value: str
    case_id: int
    agency_id: int
    contact: Contact
    entity_id: int | None = None
    display: str = ""


@dataclass(frozen=True)
class Stamp:
    """What every row of one load shares."""

    registered_at: datetime
    expires_at: datetime
    registered_by_id: int | None = None


@dataclass
class Prepared:
    """Index rows, column by column, sorted by key64: what the COPY needs. What only
    the careful path needs is taken from the entries again, then."""

    scheme: str
    entries: Sequence[Entry] = ()
    entry: list[int] = field(default_factory=list)  # row -> the entry it came from
    key64: list[int] = field(default_factory=list)
    case_id: list[int] = field(default_factory=list)
    value_key: list[str] = field(default_factory=list)
    blocks: list[tuple[str, ...]] = field(default_factory=list)
    # the COPY columns after id (key_slot 0), tab-separated, ending in "\n"
    tail: list[str] = field(default_factory=list)
    # input index -> the row it became (a repeat in the input maps to the first)
    row_of: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.key64)


@dataclass
class Loaded:
    """Per prepared row: its registration id, whether it was made now, and whether
    it must be checked for matches (new, or back from expiry)."""

    ids: list[int] = field(default_factory=list)
    created: list[bool] = field(default_factory=list)
    check: list[bool] = field(default_factory=list)
    fast: bool = False

    @property
    def n_created(self) -> int:
        return sum(self.created)

    @property
    def n_renewed(self) -> int:
        return len(self.created) - self.n_created


def _copy(value: Any) -> str:
    """A value as COPY's text format writes it."""
    if value is None:
        return NULL
    if isinstance(value, str):
        return value.translate(_ESCAPES) if _SPECIAL.search(value) else value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def prepare(entries: Sequence[Entry], ring: Keyring, stamp: Stamp) -> Prepared:
    """Index rows for the entries (see the module docstring); no database. Written
    for speed (it runs once per row of a load of millions): plain lists, no
    per-row objects."""
    scheme = ring.scheme
    value_key = ring.value_key
    k64 = ring.key64
    blind_on = ring.blind
    fixed = f"\t{_copy(stamp.registered_by_id)}\t{_copy(stamp.registered_at)}" \
            f"\t{_copy(stamp.expires_at)}\n"
    contacts: dict[int, str] = {}  # id(contact) -> its COPY columns
    seen: dict[tuple[int, str, str], int] = {}
    sources: list[int] = []
    first: list[int] = []
    key64s: list[int] = []
    case_ids: list[int] = []
    value_keys: list[str] = []
    blocks_of: list[tuple[str, ...]] = []
    tails: list[str] = []
    for i, (kind, value, case_id, agency_id, contact, eid, display) in enumerate(entries):
        vk = value_key(kind, value)
        ident = (case_id, kind, vk)
        j = seen.get(ident)
        if j is None:
            j = seen[ident] = len(tails)
            sketch = hint = None
            blocks: tuple[str, ...] = ()
            if kind == "person":
                sketch, blocks = _person_keys(value, ring)
            if not blind_on:
                hint = (display or value)[:512]
            poc = contacts.get(id(contact))
            if poc is None:
                poc = contacts[id(contact)] = "\t".join(_copy(v) for v in (
                    contact.user_id, contact.name, contact.phone or "", contact.email or ""))
            k = k64(kind, vk)
            # blind value keys are hex and sketches JSON of hex: nothing to escape
            tails.append(f"{k}\t0\t{kind}\t{vk if blind_on else _copy(vk)}\t{scheme}"
                         f"\t{NULL if hint is None else _copy(hint)}"
                         f"\t{NULL if sketch is None else sketch}\t{agency_id}"
                         f"\t{case_id}\t{NULL if eid is None else eid}\t{poc}{fixed}")
            key64s.append(k)
            case_ids.append(case_id)
            value_keys.append(vk)
            blocks_of.append(blocks)
            first.append(i)
        sources.append(j)
    # in key order: a batch's inserts then walk the index from left to right
    order = sorted(range(len(tails)), key=key64s.__getitem__)
    position = [0] * len(order)
    for new, old in enumerate(order):
        position[old] = new
    return Prepared(
        scheme=scheme, entries=entries, entry=[first[j] for j in order],
        key64=[key64s[j] for j in order], case_id=[case_ids[j] for j in order],
        value_key=[value_keys[j] for j in order], blocks=[blocks_of[j] for j in order],
        tail=[tails[j] for j in order], row_of=[position[j] for j in sources])


def _sketch_in(tail: str) -> dict[str, Any] | None:
    """The sketch a COPY line holds (JSON of hex tags: no escapes), as an object."""
    text = tail.split("\t", 7)[6]
    return None if text == NULL else json.loads(text)


def _person_keys(value: str, ring: Keyring) -> tuple[str | None, tuple[str, ...]]:
    """A person's sketch (JSON, blind only) and block keys, as stored."""
    tokens, dob = matching.person_parts(value)
    sketch = json.dumps(matching.person_sketch(tokens, dob, ring),
                        separators=(",", ":")) if ring.blind else None
    return sketch, tuple(sorted(matching.person_block_keys(tokens, dob, ring)))


# --------------------------------------------------------------------------- loading

def load(conn: sa.Connection, prepared: Prepared, stamp: Stamp, *,
         ids: bool = True) -> Loaded:
    """Write a prepared batch on `conn`, in its transaction (not committed). With
    `ids` False the fast path leaves the numbering to the database and returns no
    ids (a large load that needs none back: it saves reserving them)."""
    if not len(prepared):
        return Loaded(fast=True)
    if conn.dialect.name == "postgresql":
        loaded = _copy_all_new(conn, prepared, ids=ids)
        if loaded is not None:
            return loaded
    return _careful(conn, prepared, stamp)


def _copy_all_new(conn: sa.Connection, p: Prepared, *, ids: bool = True) -> Loaded | None:
    """The fast path: COPY every row at slot 0, or nothing (None) when one of them is
    taken already (a savepoint undoes the partial COPY)."""
    from psycopg import errors as pg_errors

    n = len(p)
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        numbers: list[int] = []
        if ids:
            cur.execute("SELECT nextval(pg_get_serial_sequence('target_registrations', 'id'))"
                        " FROM generate_series(1, %s)", (n,))
            numbers = [r[0] for r in cur.fetchall()]
            lines = "".join([f"{rid}\t{tail}" for rid, tail in zip(numbers, p.tail,
                                                                     strict=True)])
            blocks = "".join([f"{rid}\t{b}\n" for rid, bs in zip(numbers, p.blocks,
                                                                   strict=True) for b in bs])
        else:
            lines = "".join(p.tail)
            blocks = "".join([f"{k}\t{c}\t{b}\n" for k, c, bs in zip(
                p.key64, p.case_id, p.blocks, strict=True) for b in bs])
        cur.execute("SAVEPOINT deconfliction_bulk")
        try:
            with cur.copy(COPY_REGS if ids else COPY_REGS_NUMBERED_BY_DB) as cp:
                cp.write(lines)
            if blocks and ids:
                with cur.copy(COPY_BLOCKS) as cp:
                    cp.write(blocks)
            elif blocks:
                cur.execute(STAGE_BLOCKS)
                with cur.copy(COPY_STAGED_BLOCKS) as cp:
                    cp.write(blocks)
                cur.execute(ATTACH_STAGED_BLOCKS)
                cur.execute("TRUNCATE deconfliction_blocks_in")
        except pg_errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT deconfliction_bulk")
            cur.execute("RELEASE SAVEPOINT deconfliction_bulk")
            return None
        cur.execute("RELEASE SAVEPOINT deconfliction_bulk")
    return Loaded(ids=numbers, created=[True] * n, check=[True] * n, fast=True)


def _careful(conn: sa.Connection, p: Prepared, stamp: Stamp) -> Loaded:
    """Renew what is there, slot what is new (see the module docstring)."""
    R = TargetRegistration
    n = len(p)
    # (key64, case) -> (kind, value_key, scheme, id or None, expires_at) of its slots
    group: dict[tuple[int, int], list[tuple]] = defaultdict(list)
    keys = sorted(set(p.key64))
    cases = sorted(set(p.case_id))
    for i in range(0, len(keys), LOOKUP_CHUNK):
        # FOR SHARE: a purge cannot delete them (and leave a gap in the slots) meanwhile
        query = (sa.select(R.key64, R.case_id, R.kind, R.value_key, R.scheme, R.id,
                           R.expires_at)
                 .where(R.key64.in_(keys[i:i + LOOKUP_CHUNK]), R.case_id.in_(cases))
                 .order_by(R.key_slot).with_for_update(read=True))
        for k, c, *rest in conn.execute(query):
            group[(k, c)].append(tuple(rest))
    loaded = Loaded(ids=[0] * n, created=[False] * n, check=[False] * n)
    new: list[tuple[int, dict[str, Any]]] = []
    renew: list[dict[str, Any]] = []
    for j in range(n):
        e = p.entries[p.entry[j]]
        same = group[(p.key64[j], p.case_id[j])]
        ident = (e.kind, p.value_key[j], p.scheme)
        there = next((g for g in same if g[:3] == ident), None)
        if there is not None:
            if there[3] is None:  # a repeat inside the batch: prepare drops those
                raise AssertionError("repeated identifier in a prepared batch")
            loaded.ids[j] = there[3]
            loaded.check[j] = there[4] <= stamp.registered_at  # back from expiry
            renew.append({"rid": there[3], "eid": e.entity_id})
            continue
        slot = len(same)  # slots are dense: the next one is free
        same.append((*ident, None, None))
        c = e.contact
        blind_on = p.scheme != "plain"
        new.append((j, {
            "key64": p.key64[j], "key_slot": slot, "kind": e.kind,
            "value_key": p.value_key[j], "scheme": p.scheme,
            "display_hint": None if blind_on else (e.display or e.value)[:512],
            "sketch": _sketch_in(p.tail[j]), "agency_id": e.agency_id, "case_id": e.case_id,
            "entity_id": e.entity_id, "poc_user_id": c.user_id, "poc_name": c.name,
            "poc_phone": c.phone or "", "poc_email": c.email or "",
            "registered_by_id": stamp.registered_by_id,
            "registered_at": stamp.registered_at, "expires_at": stamp.expires_at}))
        loaded.created[j] = loaded.check[j] = True
    if new:
        ids = conn.execute(sa.insert(R).returning(R.id, sort_by_parameter_order=True),
                           [values for _, values in new]).scalars().all()
        blocks = []
        for (j, _), rid in zip(new, ids, strict=True):
            loaded.ids[j] = rid
            blocks.extend({"registration_id": rid, "block_key": b} for b in p.blocks[j])
        if blocks:
            conn.execute(sa.insert(PersonBlock), blocks)
    if renew:
        conn.execute(sa.update(R).where(R.id == sa.bindparam("rid")).values(
            expires_at=sa.case((R.expires_at < stamp.expires_at, stamp.expires_at),
                               else_=R.expires_at),
            renewed_at=stamp.registered_at,
            entity_id=sa.func.coalesce(R.entity_id, sa.bindparam("eid", type_=sa.Integer))),
            renew)
    return loaded


def renumber_slots(conn: sa.Connection) -> int:
    """Close the gaps a deletion left in the slots of values sharing a key64 in one
    case (slot 0 must be taken whenever any slot is; see the module docstring).
    Reads only the rows at slot 1+ (their partial index), next to none."""
    R = TargetRegistration
    pairs = sorted({(k, c) for k, c in conn.execute(
        sa.select(R.key64, R.case_id).where(R.key_slot > 0))})
    moved = 0
    for k, c in pairs:
        held = conn.execute(sa.select(R.id, R.key_slot).where(
            R.key64 == k, R.case_id == c).order_by(R.key_slot)).all()
        for slot, (rid, old) in enumerate(held):  # ascending: each target slot is free
            if old != slot:
                conn.execute(sa.update(R).where(R.id == rid).values(key_slot=slot))
                moved += 1
    return moved


# --------------------------------------------------------------------------- large loads

_worker_engine: sa.Engine | None = None  # a load_parallel worker's own engine


def _worker_start(engine: sa.Engine) -> None:
    """In a freshly forked worker: a pool of its own (the parent's connections are
    the parent's; dispose(close=False) leaves them alone)."""
    global _worker_engine
    # the parent's SIGTERM handler (a server's, a test runner's) is not the worker's:
    # terminating the pool must end the workers, nothing else
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    engine.dispose(close=False)
    _worker_engine = engine


def _prepare_and_load(task: tuple) -> dict[str, Any]:
    source, ring, stamp = task
    engine = _worker_engine
    assert engine is not None
    t0 = time.perf_counter()
    prepared = prepare(source(), ring, stamp)
    t1 = time.perf_counter()
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # this batch's transaction only: a crash may lose the last batches, never
            # corrupt anything, and a load is re-run from its source
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        loaded = load(conn, prepared, stamp, ids=False)
        conn.commit()
    return {"rows": len(prepared), "created": loaded.n_created, "renewed": loaded.n_renewed,
            "blocks": sum(len(b) for b in prepared.blocks), "fast": loaded.fast,
            "prepare_s": t1 - t0, "load_s": time.perf_counter() - t1}


def load_parallel(engine: sa.Engine, sources: Iterable[Callable[[], Sequence[Entry]]], *,
                  ring: Keyring, stamp: Stamp, workers: int = 0,
                  progress: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """Load many batches, each made by calling a source (a picklable callable that
    returns the entries). `workers` processes (forked; none: this process) each
    take a source, prepare its batch (one HMAC per row when blind) and load it on a
    connection of their own, committed on its own: no batch crosses between
    processes, and PostgreSQL's share (writing rows, keeping the indexes) runs on
    as many backends, while a worker waiting on its COPY leaves its core to them.
    Returns counts and where the time went (summed over the workers)."""
    totals = {"rows": 0, "created": 0, "renewed": 0, "blocks": 0, "fast_batches": 0,
              "careful_batches": 0, "prepare_s": 0.0, "load_s": 0.0}
    tasks = ((source, ring, stamp) for source in sources)
    pool = None
    if workers > 0:
        pool = multiprocessing.get_context("fork").Pool(
            workers, initializer=_worker_start, initargs=(engine,))
        results = pool.imap_unordered(_prepare_and_load, tasks)
    else:
        global _worker_engine
        _worker_engine = engine
        results = map(_prepare_and_load, tasks)
    try:
        for out in results:
            for key in ("rows", "created", "renewed", "blocks", "prepare_s", "load_s"):
                totals[key] += out[key]
            totals["fast_batches" if out["fast"] else "careful_batches"] += 1
            if progress is not None:
                progress(totals["rows"])
    except BaseException:
        if pool is not None:
            pool.terminate()  # the batches not yet loaded are not loaded
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return {**totals, "prepare_s": round(totals["prepare_s"], 1),
            "load_s": round(totals["load_s"], 1)}
