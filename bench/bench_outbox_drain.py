"""Drain of a large graph outbox into Neo4j after a CDR import: outbox rows per second.

    python bench/bench_outbox_drain.py                    # 200,000 call records, PostgreSQL
    python bench/bench_outbox_drain.py --rows 50000 --db sqlite --repeat 1

The outbox: a CSV of ``--rows`` call records (``synthetic.iter_call_records``) is
imported into a case through the product path (``imports.start_import``: evidence
item, parse, aggregate per (caller, callee, type), entities, memberships, links and
one outbox row per entity and link, committed). The import's own after-commit drain
is held back, so the outbox waits, as it does when the worker is busy or Neo4j is
down. 200,000 records leave ~19,000 rows (586 phones, ~18,000 links).

What is timed, on the same outbox, ``--repeat`` times each, alternately and in
alternating order (each from an empty graph, the rows set unprocessed again before
each run):

* ours: ``outbox.drain()`` as shipped (DRAIN_BATCH rows a batch, the state read as
  plain columns in a few set-based queries per chunk of ids, one write per object);
* baseline: ``baseline_drain()`` below, the drain as it was before issue #4: 1,000
  rows a batch, each batch's entities and links loaded as ORM objects (an Entity with
  its memberships and identifiers; a Link joined to both endpoints, each with theirs)
  and made into rows one object at a time. Same projection writer, same marking, same
  lock: only what changed for the issue differs.

Both are checked against ``outbox.rebuild()`` of the same data (run first, untimed;
it also plans every Cypher statement the drains send, so neither pays for that):
after every run, ``projection.snapshot()`` of the drained graph must equal the
rebuilt one (every node and relationship, every property); the JSON gives the counts
and a sample. Seconds are the best of the repeats (the machine may be shared: the
load average before each run is recorded, with the drainer's and Neo4j's CPU time).

Neo4j (scripts/services.py, ``--heap``, ``--pagecache``) and PostgreSQL (``--db
postgresql``, the default) are started here in a throw-away folder. Writes
bench/results/outbox_drain.json.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import select, update

from scripts import services
from taskforce import create_app
from taskforce.accounts import service as accounts
from taskforce.accounts.permissions import Actor
from taskforce.extensions import db
from taskforce.graph import client, imports, outbox, projection, synthetic
from taskforce.graph.models import Entity, GraphOutbox, Link
from taskforce.investigations import service as cases


def machine() -> dict:
    return {"cores": os.cpu_count(), "python": platform.python_version(),
            "when": datetime.now(UTC).isoformat(timespec="seconds")}


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def cdr_csv(n: int, seed: int) -> bytes:
    network = synthetic.generate(seed=seed)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["caller", "callee", "start", "duration_s", "call_type", "cell_tower"])
    for r in synthetic.iter_call_records(network, n, seed=seed):
        w.writerow([r.caller, r.callee, r.start, r.duration_s, r.call_type, r.cell_tower or ""])
    return buf.getvalue().encode()


def cpu_seconds(marker: str) -> float:
    """User + system CPU of the processes whose command line names `marker` (the
    Neo4j server JVM, by its conf folder)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


# --------------------------------------------------------------------------- the outbox

def seed_case() -> tuple[Actor, int]:
    console = Actor.system("bench")
    agency = accounts.create_agency(actor=console, name="Bench PD", level="local",
                                    ori="TX0000001")
    user, _ = accounts.create_user(actor=console, username="lead", full_name="Lead Detective",
                                   email="lead@example.gov", agency_id=agency.id,
                                   roles=["investigator"],
                                   password="correct horse battery bench staple")
    actor = Actor.for_user(user)
    case = cases.open_case(actor=actor, title="Bench", offences=["sex_trafficking"])
    return actor, case.id


def import_cdr(actor: Actor, case_id: int, data: bytes) -> dict:
    """The product import; its after-commit drain held back so the outbox waits."""
    held = outbox.request_drain
    outbox.request_drain = lambda: None
    try:
        t0 = time.perf_counter()
        started = imports.start_import(actor=actor, case_id=case_id, stream=io.BytesIO(data),
                                       kind="cdr", filename="bench-cdr.csv")
        seconds = time.perf_counter() - t0
    finally:
        outbox.request_drain = held
    run = started.run
    if run.status != "done":
        raise SystemExit(f"the import failed: {run.error}")
    return {"rows_read": run.rows_read, "rows_loaded": run.rows_loaded,
            "entities_created": run.entities_created, "links_created": run.links_created,
            "seconds": round(seconds, 2)}


def pending_ids() -> list[int]:
    ids = list(db.session.scalars(select(GraphOutbox.id).where(GraphOutbox.processed_at.is_(None))
                                  .order_by(GraphOutbox.id)))
    db.session.rollback()
    return ids


def set_pending(ids: list[int]) -> None:
    for i in range(0, len(ids), 2000):
        db.session.execute(update(GraphOutbox).where(GraphOutbox.id.in_(ids[i:i + 2000]))
                           .values(processed_at=None))
    db.session.commit()


# --------------------------------------------------------------------------- baseline

def baseline_drain(batch: int = 1000, spent: Counter | None = None) -> outbox.DrainResult:
    """The drain before issue #4: the same loop, lock, writer and marking, but 1,000
    rows a batch and each batch read through the ORM (``_baseline_read_batch``)."""
    result = outbox.DrainResult()
    with outbox.exclusive() as mine:
        if not mine:
            raise SystemExit("another drain holds the lock")
        outbox._check_reachable()
        while True:
            t0 = time.perf_counter()
            work = _baseline_read_batch(batch)
            if spent is not None:
                spent["read_s"] += time.perf_counter() - t0
            if work is None:
                break
            counts = outbox._project(work)
            outbox._mark_processed(work.ids)
            result.batches += 1
            result.processed += len(work.ids)
            result.entities += counts["entities"]
            result.links += counts["links"]
            result.deleted += counts["deleted"]
            if len(work.ids) < batch:
                break
    return result


def _baseline_read_batch(batch: int) -> outbox._Batch | None:
    """outbox._read_batch as it was: Entity and Link objects, rows made one by one."""
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
        entities = {e.id: e for e in db.session.scalars(
            select(Entity).where(Entity.id.in_(entity_ids),
                                 Entity.merged_into_id.is_(None)))} if entity_ids else {}
        links = {lk.id: lk for lk in db.session.scalars(
            select(Link).where(Link.id.in_(link_ids)))} if link_ids else {}
        return outbox._Batch(
            ids=[r.id for r in rows],
            upsert_entities=outbox.entity_rows([entities[i] for i in entity_ids if i in entities],
                                               today=today),
            upsert_links=[outbox.link_row(links[i]) for i in link_ids if i in links],
            delete_entities=[outbox.entity_node_id(i) for i in entity_ids if i not in entities],
            delete_links=[outbox.link_rel_id(i) for i in link_ids if i not in links],
        )
    finally:
        db.session.rollback()


# --------------------------------------------------------------------------- timing

@contextmanager
def phases() -> Iterator[Counter]:
    """Seconds spent reading batches, writing Neo4j and marking rows processed (the
    baseline and ours call the same _project and _mark_processed; the baseline's
    reads are counted by baseline_drain itself)."""
    spent: Counter = Counter()
    saved = {}

    def wrap(name: str, key: str) -> None:
        fn = saved[name] = getattr(outbox, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t0
        setattr(outbox, name, timed)

    wrap("_read_batch", "read_s")
    wrap("_project", "neo4j_write_s")
    wrap("_mark_processed", "mark_s")
    try:
        yield spent
    finally:
        for name, fn in saved.items():
            setattr(outbox, name, fn)


def run_once(name: str, drain: Callable[[Counter], outbox.DrainResult], ids: list[int],
             neo_marker: str, expected: dict) -> dict:
    set_pending(ids)
    projection.clear()
    before = load()
    cpu0, neo0 = time.process_time(), cpu_seconds(neo_marker)
    with phases() as spent:
        t0 = time.perf_counter()
        result = drain(spent)
        seconds = time.perf_counter() - t0
    cpu, neo = time.process_time() - cpu0, cpu_seconds(neo_marker) - neo0
    if not result.ok or result.processed != len(ids) or outbox.pending_count():
        raise SystemExit(f"{name}: the drain did not finish: {result.as_dict()}")
    db.session.rollback()
    got = projection.snapshot()
    if got != expected:
        raise SystemExit(f"{name}: the drained graph differs from the rebuilt one")
    print(f"[bench] {name}: {len(ids):,} rows in {seconds:.2f}s "
          f"({len(ids) / seconds:,.0f}/s), load {before}", file=sys.stderr)
    return {"seconds": round(seconds, 3), "per_s": round(len(ids) / seconds),
            "batches": result.batches, **{k: round(v, 3) for k, v in spent.items()},
            "drainer_cpu_s": round(cpu, 2), "neo4j_cpu_s": round(neo, 2),
            "load_before": before, "equals_rebuild": True}


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["seconds"])


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="call records imported")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--heap", default="1g")
    parser.add_argument("--pagecache", default="512m")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "outbox_drain.json"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        tmp_path = Path(tmp)
        t = time.perf_counter()
        data = cdr_csv(args.rows, args.seed)
        print(f"[bench] {args.rows:,} call records written in {time.perf_counter() - t:.1f}s",
              file=sys.stderr)
        # throwaway=False: the C2 JIT, as in production (the test servers' C1 is slower)
        neo = services.start_neo4j(tmp_path / "neo4j", heap=args.heap, pagecache=args.pagecache,
                                   throwaway=False, timeout=180)
        pg = None
        try:
            if args.db == "postgresql":
                pg = services.start_postgres(tmp_path / "pg")
                url = pg.url
            else:
                url = f"sqlite:///{tmp_path / 'app.db'}"
            app = create_app(environ={
                "TASKFORCE_ENV": "test", "TASKFORCE_INSTANCE": str(tmp_path / "instance"),
                "SECRET_KEY": "bench-only-" + "x" * 32, "DATABASE_URL": url, **neo.env()})
            with app.app_context():
                db.create_all()
                actor, case_id = seed_case()
                projection.ensure_schema()
                version = client.read("CALL dbms.components() YIELD versions "
                                      "RETURN versions[0] AS v")[0]["v"]
                imported = import_cdr(actor, case_id, data)
                ids = pending_ids()
                ops = Counter(db.session.scalars(select(GraphOutbox.op)))
                db.session.rollback()
                print(f"[bench] import: {imported}; {len(ids):,} outbox rows wait",
                      file=sys.stderr)
                t = time.perf_counter()
                rebuilt = outbox.rebuild()
                rebuild_s = time.perf_counter() - t
                expected = projection.snapshot()
                marker = str(tmp_path / "neo4j" / "conf")
                runs: dict[str, list[dict]] = {"baseline": [], "ours": []}
                drains = {"baseline": lambda spent: baseline_drain(spent=spent),
                          "ours": lambda _spent: outbox.drain()}
                for i in range(args.repeat):
                    # alternate who goes first: neither always meets a colder JIT
                    for name in (("baseline", "ours") if i % 2 == 0 else ("ours", "baseline")):
                        runs[name].append(run_once(name, drains[name], ids, marker, expected))
            client.close(app)
        finally:
            neo.stop()
            if pg is not None:
                pg.stop()

    ours, baseline = best(runs["ours"]), best(runs["baseline"])
    sample_links = expected["links"][:: max(1, len(expected["links"]) // 3)][:3]
    result = {
        "bench": "outbox_drain",
        "rows": args.rows,
        "db": args.db,
        "import": imported,
        "outbox_rows": len(ids),
        "outbox_ops": dict(ops),
        "ours": {**ours, "batch": outbox.DRAIN_BATCH},
        "baseline": {**baseline, "batch": 1000,
                     "method": "the pre-issue-#4 drain: 1,000 rows a batch, ORM reads"},
        "ratio": round(baseline["seconds"] / ours["seconds"], 1),
        "runs": runs,
        "verified": {"against": "outbox.rebuild() of the same database",
                     "rebuild_s": round(rebuild_s, 2), "nodes": len(expected["nodes"]),
                     "relationships": len(expected["links"]),
                     "rebuilt": {"entities": rebuilt.entities, "links": rebuilt.links},
                     "snapshots_equal_every_run": True,
                     "sample_links": sample_links, "sample_node": expected["nodes"][0]},
        "neo4j": {"version": version, "heap": args.heap, "pagecache": args.pagecache,
                  "jit": "C2 (scripts/services.py throwaway=False)",
                  "link_batch_size": projection.BATCH_SIZE},
        "machine": {**machine(), "loadavg_end": Path("/proc/loadavg").read_text().strip()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("rows", "outbox_rows", "ours", "baseline", "ratio")},
                     indent=2))
    return result


if __name__ == "__main__":
    main()
