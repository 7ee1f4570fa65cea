"""Event (operation) deconfliction at scale: the check of a new operation against
1,000,000 planned operations, on SQLite (the embedded default), against a naive
scan measured on a sample in the same run.

    python bench/bench_event_check.py                       # 1,000,000 operations
    python bench/bench_event_check.py --n 200000 --queries 500
    python bench/bench_event_check.py --database-url postgresql://...   # another engine

The operations: ``--agencies`` agencies; centres around 60 US metropolitan areas
(normal scatter, 12 km standard deviation); radii log-uniform between 50 m and
3 km (one in fifty up to 25 km: a wide surveillance); windows of 1 to 12 hours
(one in twenty up to 14 days) starting uniformly over the next ``--days`` days.
That is far denser than any task force's real calendar (each metro holds
~16,000 operations), which is what makes the index work.

Loading (not what is measured): each operation's H3 cover and days
(geo.disc_cells, geo.days_touched: the service's own functions) and rows written with executemany in the layout the ORM
writes, every index in place, then ANALYZE.

Timed:

ours
    ``operations.find_conflicts`` for a new operation drawn from the same
    distribution, exactly what ``operations.submit`` runs: the disc's cells and the
    window's days, one seek per (cell, day) on a covering index with the window and
    agency filters, the candidates' rows by primary key, the exact haversine test.
    ``--queries`` of them, after ``--warmup``. Also ``operations.submit`` end to
    end on ``--submits`` (validation, insert, cells, hits and notifications, audit,
    commit).
baseline
    The naive check: every operation whose window overlaps and that belongs to
    another agency, read with a full scan of the table (``NOT INDEXED``), then
    the same haversine test in Python; on ``--baseline-queries`` of the same
    queries. Its answers must equal ours (checked), so the index misses nothing.

``ratio`` is baseline p99 over ours. Writes bench/results/event_check.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sqlalchemy as sa

from taskforce import create_app
from taskforce.accounts.permissions import Actor
from taskforce.extensions import db

METROS = [  # (lat, lon) of 60 US metropolitan areas
    (40.71, -74.01), (34.05, -118.24), (41.88, -87.63), (29.76, -95.37), (33.45, -112.07),
    (39.95, -75.17), (29.42, -98.49), (32.72, -117.16), (32.78, -96.80), (30.27, -97.74),
    (30.33, -81.66), (32.76, -97.33), (39.96, -83.00), (35.23, -80.84), (37.77, -122.42),
    (39.77, -86.16), (47.61, -122.33), (39.74, -104.99), (38.91, -77.04), (42.36, -71.06),
    (31.76, -106.49), (36.16, -86.78), (42.33, -83.05), (35.47, -97.52), (45.52, -122.68),
    (36.17, -115.14), (35.15, -90.05), (38.25, -85.76), (39.29, -76.61), (43.04, -87.91),
    (35.08, -106.65), (32.22, -110.97), (36.74, -119.79), (38.58, -121.49), (33.75, -84.39),
    (25.76, -80.19), (27.95, -82.46), (28.54, -81.38), (44.98, -93.27), (29.95, -90.07),
    (41.50, -81.69), (40.44, -79.99), (39.10, -94.58), (38.63, -90.20), (39.80, -89.65),
    (41.26, -95.93), (35.78, -78.64), (36.85, -75.98), (21.31, -157.86), (61.22, -149.90),
    (43.62, -116.20), (40.76, -111.89), (46.88, -96.79), (43.55, -96.73), (42.89, -78.88),
    (43.16, -77.61), (42.65, -73.75), (41.76, -72.68), (41.82, -71.41), (44.48, -73.21),
]
KINDS = ["search_warrant", "buy_bust", "surveillance", "undercover_meeting", "rescue_recovery"]
SCATTER_KM = 12.0
WARMUP = 50


def machine() -> dict:
    return {"cores": os.cpu_count(), "python": platform.python_version(),
            "when": datetime.now(UTC).isoformat(timespec="seconds")}


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))] if s else float("nan")


def latency(ms: list[float]) -> dict:
    return {"p50_ms": round(pct(ms, 50), 3), "p95_ms": round(pct(ms, 95), 3),
            "p99_ms": round(pct(ms, 99), 3), "mean_ms": round(statistics.fmean(ms), 3),
            "queries": len(ms)}


def progress(label: str, done: int, total: int, t0: float) -> None:
    rate = done / max(1e-9, time.perf_counter() - t0)
    print(f"\r  {label}: {done:,}/{total:,} ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)


class World:
    """The synthetic calendar: operation i is a pure function of (seed, i)."""

    def __init__(self, seed: int, agencies: list[int], days: int, now: datetime):
        self.seed, self.agencies, self.days, self.now = seed, agencies, days, now

    def operation(self, i: int) -> dict:
        rnd = random.Random(self.seed * 1_000_003 + i)
        lat0, lon0 = rnd.choice(METROS)
        dlat = rnd.gauss(0, SCATTER_KM) / 111.0
        dlon = rnd.gauss(0, SCATTER_KM) / (111.0 * math.cos(math.radians(lat0)))
        radius = (rnd.uniform(3_000, 25_000) if rnd.random() < 0.02
                  else math.exp(rnd.uniform(math.log(50), math.log(3_000))))
        start = self.now + timedelta(minutes=rnd.randrange(0, self.days * 24 * 60))
        hours = rnd.uniform(24, 14 * 24) if rnd.random() < 0.05 else rnd.uniform(1, 12)
        return {"kind": rnd.choice(KINDS), "agency_id": rnd.choice(self.agencies),
                "latitude": lat0 + dlat, "longitude": lon0 + dlon, "radius_m": round(radius),
                "starts_at": start, "ends_at": start + timedelta(hours=hours),
                "undercover": rnd.random() < 0.3}


# --------------------------------------------------------------------------- setup

def make_app(url: str, instance: Path):
    return create_app(environ={
        "TASKFORCE_ENV": "development", "TASKFORCE_INSTANCE": str(instance),
        "SECRET_KEY": "bench-only-secret-key-" + "x" * 20, "DATABASE_URL": url,
    })


def seed_agencies(n: int) -> tuple[list[int], list[Actor]]:
    from taskforce.accounts import service as accounts

    console = Actor.system("bench")
    agency_ids, actors = [], []
    for k in range(n):
        agency = accounts.create_agency(actor=console, name=f"Bench Agency {k}",
                                        level="local", ori=f"BE{k:07d}")
        user, _ = accounts.create_user(actor=console, username=f"bench{k}",
                                       full_name=f"Bench Planner {k}",
                                       email=f"bench{k}@example.gov", agency_id=agency.id,
                                       roles=["investigator"],
                                       password=f"correct horse battery bench {k}")
        agency_ids.append(agency.id)
        actors.append(Actor.for_user(user))
    return agency_ids, actors


def _bind(column, value):
    """A value as the ORM binds it for this column on this engine (UTC datetimes)."""
    dialect = db.engine.dialect
    processor = column.type.dialect_impl(dialect).bind_processor(dialect)
    return processor(value) if processor else value


def bulk_load(world: World, n: int) -> dict:
    from taskforce.deconfliction import geo
    from taskforce.deconfliction.models import Operation

    ops_t = Operation.__table__
    ts = ops_t.c.starts_at
    created = _bind(ops_t.c.created_at, world.now)
    op_cols = ["id", "kind", "name", "agency_id", "latitude", "longitude", "radius_m",
               "address", "starts_at", "ends_at", "undercover", "poc_name", "poc_phone",
               "poc_email", "created_at", "hit_count"]
    cell_cols = ["operation_id", "cell", "day", "starts_at", "ends_at", "agency_id"]
    chunk = 20_000
    cells_total = 0
    t0 = time.perf_counter()
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        ph = "?" if db.engine.dialect.name == "sqlite" else "%s"
        op_sql = (f"INSERT INTO operations ({', '.join(op_cols)}) VALUES "
                  f"({', '.join([ph] * len(op_cols))})")
        cell_sql = (f"INSERT INTO operation_cells ({', '.join(cell_cols)}) VALUES "
                    f"({', '.join([ph] * len(cell_cols))})")
        for start in range(0, n, chunk):
            op_rows, cell_rows = [], []
            for i in range(start, min(n, start + chunk)):
                o = world.operation(i)
                rid = i + 1
                s, e = _bind(ts, o["starts_at"]), _bind(ts, o["ends_at"])
                op_rows.append((rid, o["kind"], "", o["agency_id"], o["latitude"],
                                o["longitude"], o["radius_m"], "", s, e, o["undercover"],
                                "Bench Planner", "", "bench@example.gov", created, 0))
                days = geo.days_touched(o["starts_at"], o["ends_at"])
                for c in geo.disc_cells(o["latitude"], o["longitude"], o["radius_m"]):
                    cell_rows.extend((rid, c, d, s, e, o["agency_id"]) for d in days)
            cur.executemany(op_sql, op_rows)
            cur.executemany(cell_sql, cell_rows)
            raw.commit()
            cells_total += len(cell_rows)
            progress("loading operations", min(n, start + chunk), n, t0)
        print(file=sys.stderr)
        if db.engine.dialect.name == "postgresql":
            cur.execute("SELECT setval(pg_get_serial_sequence('operations', 'id'), %s)",
                        (n + 1,))
            raw.commit()
    finally:
        raw.close()
    seconds = time.perf_counter() - t0
    with db.engine.connect() as conn:
        conn.execute(sa.text("ANALYZE"))
        conn.commit()
    return {"operations": n, "cell_day_rows": cells_total, "rows_per_operation":
            round(cells_total / n, 2), "seconds": round(seconds, 1),
            "per_s": round(n / seconds)}


# --------------------------------------------------------------------------- checks

def queries(world: World, count: int) -> list[dict]:
    probe = World(world.seed + 1, world.agencies, world.days, world.now)
    return [probe.operation(i) for i in range(count)]


def time_ours(qs: list[dict], now: datetime) -> tuple[dict, list[set[int]], int]:
    from taskforce.deconfliction import operations

    def run(q):
        return operations.find_conflicts(
            latitude=q["latitude"], longitude=q["longitude"], radius_m=q["radius_m"],
            starts_at=q["starts_at"], ends_at=q["ends_at"], now=now,
            exclude_agency_id=q["agency_id"])

    for q in qs[:WARMUP]:
        run(q)
        db.session.rollback()
    ms, answers, conflicts = [], [], 0
    for q in qs[WARMUP:]:
        t0 = time.perf_counter()
        found = run(q)
        ms.append((time.perf_counter() - t0) * 1000)
        answers.append({op.id for op, _ in found})
        conflicts += len(found)
        db.session.rollback()
    return latency(ms), answers, conflicts


def time_naive(qs: list[dict], now: datetime) -> tuple[dict, list[set[int]]]:
    """Every overlapping window of another agency by a full scan, then haversine."""
    from taskforce.deconfliction import geo
    from taskforce.deconfliction.models import Operation

    ts = Operation.__table__.c.starts_at
    sqlite = db.engine.dialect.name == "sqlite"
    table = "operations NOT INDEXED" if sqlite else "operations"
    sql = sa.text(f"SELECT id, latitude, longitude, radius_m FROM {table} "
                  "WHERE starts_at < :end AND ends_at > :live AND agency_id != :agency "
                  "AND cancelled_at IS NULL")
    ms, answers = [], []
    with db.engine.connect() as conn:
        if not sqlite:
            for stmt in ("SET enable_indexscan = off", "SET enable_bitmapscan = off",
                         "SET enable_indexonlyscan = off"):
                conn.execute(sa.text(stmt))
        for q in qs:
            t0 = time.perf_counter()
            rows = conn.execute(sql, {"end": _bind(ts, q["ends_at"]),
                                      "live": _bind(ts, max(q["starts_at"], now)),
                                      "agency": q["agency_id"]}).all()
            hit = {r.id for r in rows if geo.distance_m(q["latitude"], q["longitude"],
                                                        r.latitude, r.longitude)
                   < q["radius_m"] + r.radius_m}
            ms.append((time.perf_counter() - t0) * 1000)
            answers.append(hit)
        conn.rollback()
    return latency(ms), answers


def time_submits(qs: list[dict], actors: list[Actor], agency_ids: list[int]) -> dict:
    from taskforce.deconfliction import operations

    by_agency = dict(zip(agency_ids, actors, strict=True))
    ms, hits = [], 0
    for q in qs:
        t0 = time.perf_counter()
        result = operations.submit(
            actor=by_agency[q["agency_id"]], kind=q["kind"], latitude=q["latitude"],
            longitude=q["longitude"], radius_m=q["radius_m"],
            starts_at=q["starts_at"].isoformat(), ends_at=q["ends_at"].isoformat(),
            undercover=q["undercover"])
        ms.append((time.perf_counter() - t0) * 1000)
        hits += len(result.hits)
    return latency(ms) | {"hits_made": hits}


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="operations loaded")
    ap.add_argument("--agencies", type=int, default=40)
    ap.add_argument("--days", type=int, default=180, help="windows start within this many days")
    ap.add_argument("--queries", type=int, default=2000, help="checks timed")
    ap.add_argument("--baseline-queries", type=int, default=20)
    ap.add_argument("--submits", type=int, default=200)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--database-url", default="", help="default: SQLite in a temp folder")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "event_check.json"))
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-event-"))
    url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    app = make_app(url, workdir / "instance")
    with app.app_context():
        db.create_all()
        agency_ids, actors = seed_agencies(args.agencies)
        now = datetime.now(UTC).replace(microsecond=0)
        world = World(args.seed, agency_ids, args.days, now)
        print(f"loading {args.n:,} operations into {db.engine.dialect.name}", file=sys.stderr)
        load = bulk_load(world, args.n)
        qs = queries(world, WARMUP + args.queries)
        print("timing checks", file=sys.stderr)
        ours, answers, conflicts = time_ours(qs, now)
        sample = qs[WARMUP:WARMUP + args.baseline_queries]
        naive, naive_answers = time_naive(sample, now)
        agree = naive_answers == answers[:len(sample)]
        assert agree, "the indexed check must find exactly what the scan finds"
        submits = time_submits(queries(World(args.seed + 2, agency_ids, args.days, now),
                                       args.submits), actors, agency_ids)
        size = None
        if db.engine.dialect.name == "sqlite":
            size = round(os.path.getsize(workdir / "bench.db") / 2**20)
        db.session.remove()
        db.engine.dispose()

    result = {
        "bench": "event_check",
        "n": args.n,
        "ours": {**ours, "what": "operations.find_conflicts: H3 cells of the disc x days of the "
                 "window, covering-index seeks on (cell, day), exact haversine on the candidates",
                 "conflicts_found": conflicts,
                 "submit_end_to_end": submits},
        "baseline": {**naive, "what": "the same check as a full scan of the operations "
                     "(NOT INDEXED / index scans off) with the same haversine test, on a "
                     "sample of the same queries",
                     "answers_equal_ours": agree},
        "ratio": round(naive["p99_ms"] / ours["p99_ms"], 1),
        "targets": {"check_p99_ms": 20, "n": 1_000_000},
        "database": sa.engine.make_url(url).get_backend_name(),
        "load": load,
        "database_mb": size,
        "machine": machine(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
