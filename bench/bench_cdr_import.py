"""Import call detail records into Neo4j through the projection writer: rows per second.

    python bench/bench_cdr_import.py                 # 1,000,000 records
    python bench/bench_cdr_import.py --n 200000 --workers 2

What is timed (ours), from a CSV file of N call records (caller, callee, start,
duration, type, tower; written by ``synthetic.iter_call_records`` before the clock
starts) to the graph holding them:

1. read the CSV and aggregate in Python per (caller, callee, link type): count,
   first and last time (voice -> CALLED, sms -> TEXTED). The graph ends up the same
   as with one MERGE per row (checked below), so this is legitimate;
2. ``projection.upsert_entities`` for the phones (MERGE on id) and
   ``projection.upsert_links`` for the aggregated pairs: the writer the outbox drain
   uses, ``UNWIND`` batches of ``projection.BATCH_SIZE`` rows per transaction,
   optionally split over ``--workers`` parallel writer sessions.

Baseline (same run, same server, same schema): the first ``--sample`` rows of the
same CSV written with one auto-commit ``MERGE`` per row (phones MERGEd, then the
pair's relationship MERGEd with ``ON CREATE`` / ``ON MATCH`` count, first_seen and
last_seen). Before timing the full import, ours is also run on that sample and the
two graphs are compared with ``projection.snapshot()``: they must be identical.

Neo4j is started here (scripts/services.py) in a throw-away folder, with a bigger
heap and page cache than the tests use (``--heap``, ``--pagecache``).
Writes bench/results/cdr_import.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts import services
from taskforce import create_app
from taskforce.graph import client, projection, synthetic

CASE = 1
TYPES = {"voice": "CALLED", "sms": "TEXTED"}


def machine() -> dict:
    return {"cores": os.cpu_count(), "python": platform.python_version(),
            "when": datetime.now(UTC).isoformat(timespec="seconds")}


def write_csv(path: Path, n: int, seed: int) -> None:
    network = synthetic.generate(seed=seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["caller", "callee", "start", "duration_s", "call_type", "cell_tower"])
        for r in synthetic.iter_call_records(network, n, seed=seed):
            w.writerow([r.caller, r.callee, r.start, r.duration_s, r.call_type,
                        r.cell_tower or ""])


def read_rows(path: Path, limit: int | None = None):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        for i, row in enumerate(reader):
            if limit is not None and i >= limit:
                return
            yield row


def phone_id(number: str) -> str:
    return f"phone:{number}"


def link_id(caller: str, callee: str, type_: str) -> str:
    return f"cdr:{caller}>{callee}:{type_}"


def phone_row(number: str) -> dict:
    return {"id": phone_id(number), "kind": "phone", "label": number, "cases": [CASE],
            "survivor": False, "minor": False}


# --------------------------------------------------------------------------- ours

def aggregate(rows) -> tuple[int, set[str], dict[tuple[str, str, str], list]]:
    pairs: dict[tuple[str, str, str], list] = {}
    phones: set[str] = set()
    n = 0
    for caller, callee, start, _dur, call_type, _tower in rows:
        n += 1
        key = (caller, callee, TYPES[call_type])
        agg = pairs.get(key)
        if agg is None:
            pairs[key] = [1, start, start]
            phones.add(caller)
            phones.add(callee)
        else:
            agg[0] += 1
            if start < agg[1]:
                agg[1] = start
            elif start > agg[2]:
                agg[2] = start
    return n, phones, pairs


def import_ours(app, rows, workers: int) -> dict:
    t0 = time.perf_counter()
    n, phones, pairs = aggregate(rows)
    t_agg = time.perf_counter()
    projection.upsert_entities([phone_row(p) for p in sorted(phones)])
    t_ent = time.perf_counter()
    links = [{"id": link_id(c, d, t), "type": t, "source": phone_id(c), "target": phone_id(d),
              "cases": [CASE], "first_seen": first, "last_seen": last, "confidence": 1.0,
              "count": count, "amount": None}
             for (c, d, t), (count, first, last) in pairs.items()]
    if workers <= 1:
        projection.upsert_links(links)
    else:
        # Parallel writer sessions, each on its own slice (each its own app context:
        # the client's driver is shared, sessions are not).
        def work(part: list[dict]) -> int:
            with app.app_context():
                return projection.upsert_links(part)

        size = -(-len(links) // (workers * 4))
        parts = [links[i:i + size] for i in range(0, len(links), size)]
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, parts))
    t1 = time.perf_counter()
    return {"rows": n, "seconds": round(t1 - t0, 3), "per_s": round(n / (t1 - t0)),
            "aggregate_s": round(t_agg - t0, 3), "entities_s": round(t_ent - t_agg, 3),
            "links_s": round(t1 - t_ent, 3), "phones": len(phones), "pairs": len(pairs),
            "workers": workers, "batch_size": projection.BATCH_SIZE}


# --------------------------------------------------------------------------- baseline

def _baseline_query(type_: str) -> str:
    node = ("MERGE ({v}:Entity {{id: ${v}_id}}) "
            "ON CREATE SET {v}:Phone, {v}.kind = 'phone', {v}.label = ${v}_num, "
            "{v}.cases = [$case], {v}.survivor = false, {v}.minor = false ")
    return (node.format(v="a") + node.format(v="b") +
            f"MERGE (a)-[r:{type_} {{id: $lid}}]->(b) "
            "WITH r, datetime($t) AS t "
            "SET r.cases = coalesce(r.cases, [$case]), r.confidence = 1.0, "
            "  r.count = coalesce(r.count, 0) + 1, "
            "  r.first_seen = CASE WHEN r.first_seen < t THEN r.first_seen ELSE t END, "
            "  r.last_seen = CASE WHEN r.last_seen > t THEN r.last_seen ELSE t END")


def import_baseline(rows) -> dict:
    queries = {t: _baseline_query(t) for t in TYPES.values()}
    with client.driver().session() as session:
        # Warm-up (not timed): each query planned once, then the trace removed.
        for type_, q in queries.items():
            session.run(q, a_id="warm:a", a_num="", b_id="warm:b", b_num="", case=CASE,
                        lid=f"warm:{type_}", t="2024-01-01T00:00:00").consume()
        session.run("MATCH (n:Entity) WHERE n.id STARTS WITH 'warm:' DETACH DELETE n").consume()
        n = 0
        t0 = time.perf_counter()
        for caller, callee, start, _dur, call_type, _tower in rows:
            type_ = TYPES[call_type]
            session.run(queries[type_], a_id=phone_id(caller), a_num=caller,
                        b_id=phone_id(callee), b_num=callee, case=CASE,
                        lid=link_id(caller, callee, type_), t=start).consume()
            n += 1
        t1 = time.perf_counter()
    return {"rows": n, "seconds": round(t1 - t0, 3), "per_s": round(n / (t1 - t0)),
            "method": "one auto-commit MERGE per row (phones and relationship), same schema"}


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--heap", default="2g")
    parser.add_argument("--pagecache", default="1g")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "cdr_import.json"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-cdr-") as tmp:
        tmp_path = Path(tmp)
        csv_path = tmp_path / "cdr.csv"
        t = time.perf_counter()
        write_csv(csv_path, args.n, args.seed)
        print(f"[bench] {args.n:,} call records written in {time.perf_counter() - t:.1f}s",
              file=sys.stderr)
        # throwaway=False: the test servers' C1-only JIT (quick to start, slow to run)
        # would measure the JIT, not the import.
        neo = services.start_neo4j(tmp_path / "neo4j", heap=args.heap, pagecache=args.pagecache,
                                   throwaway=False, timeout=180)
        try:
            app = create_app(environ={
                "TASKFORCE_ENV": "test", "TASKFORCE_INSTANCE": str(tmp_path / "instance"),
                "SECRET_KEY": "bench-only-" + "x" * 32,
                "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}", **neo.env()})
            with app.app_context():
                projection.ensure_schema()
                version = client.read("CALL dbms.components() YIELD versions "
                                      "RETURN versions[0] AS v")[0]["v"]
                # Baseline on the sample, then ours on the same sample: same graph?
                baseline = import_baseline(read_rows(csv_path, args.sample))
                expected = projection.snapshot()
                projection.clear()
                sample_ours = import_ours(app, read_rows(csv_path, args.sample), args.workers)
                got = projection.snapshot()
                if got != expected:
                    raise SystemExit("ours and the baseline disagree on the sample graph")
                verified = {"rows": args.sample, "phones": len(got["nodes"]),
                            "relationships": len(got["links"]),
                            "calls_counted": sum(r["props"]["count"] for r in got["links"]),
                            "snapshots_equal": True}
                projection.clear()
                print(f"[bench] baseline {baseline['per_s']:,} rows/s on {args.sample:,}; "
                      f"sample graphs equal", file=sys.stderr)
                ours = import_ours(app, read_rows(csv_path), args.workers)
                stored = client.read(
                    "MATCH ()-[r:CALLED|TEXTED]->() RETURN count(r) AS rels, "
                    "sum(r.count) AS calls")[0]
                if stored["calls"] != args.n or stored["rels"] != ours["pairs"]:
                    raise SystemExit(f"graph holds {stored}, expected {args.n} calls")
                ours["stored_calls"] = stored["calls"]
            client.close(app)
        finally:
            neo.stop()

    result = {
        "bench": "cdr_import",
        "n": args.n,
        "ours": ours,
        "baseline": baseline,
        "ratio": round(ours["per_s"] / baseline["per_s"], 1),
        "verified_on_sample": verified,
        "ours_on_sample": sample_ours,
        "neo4j": {"version": version, "heap": args.heap, "pagecache": args.pagecache,
                  "jit": "C2 (scripts/services.py throwaway=False)"},
        "targets": {"ratio_at_least": 20, "per_s_at_least": 50_000,
                    "met": ours["per_s"] >= 50_000
                    and ours["per_s"] / baseline["per_s"] >= 20},
        "machine": machine(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
