"""Target deconfliction at scale: bulk registration rate and check latency, blind
index on and off, on PostgreSQL, against naive baselines measured in the same run.

    python bench/bench_target_check.py                  # 2,000,000 registrations per mode
    python bench/bench_target_check.py --n 10000000     # the issue's size (slow to load)
    python bench/bench_target_check.py --modes blind --n 200000

Setup per mode (a fresh database on a throw-away PostgreSQL started by
scripts/services.py): three agencies, a user each, ten cases each; then N
registrations, ``--persons`` of them people (name + date of birth, with their
blocking keys and, blind, their sketch), the rest phone numbers.

What is timed:

ours, bulk
    The product's bulk path, ``deconfliction.bulk.load_parallel`` (service.register_many,
    which an import calls, runs the same ``prepare`` + ``load`` for one case): N
    normalized identifiers in batches of 50,000, each taken by one of ``--workers``
    processes that turns it into index rows (value key: the value, or its
    HMAC-SHA256 when blind; its 64-bit prefix ``key64``, the index's seek; a person's
    blocking keys and sketch), sorted by key64, and loads it on a connection of its
    own with ``COPY`` (every row new: the fast path) into ``target_registrations`` /
    ``person_blocks`` with every index in place, one transaction per batch
    (``SET LOCAL synchronous_commit = off``), committed. The result says where the
    workers' time went. Identifiers arrive normalized from the graph (normalizing
    is the graph's cost, not timed).
ours, check
    ``matching.find`` for one identifier (what ``register`` and ``check_only`` run
    per identifier): key derivation, the key64 index seek among live rows with the
    full (kind, value_key) compared, and for people the block lookup and scoring.
    ``--queries`` phones, half registered, half not, and as many people with a
    spelling slip ("Jon" for "John"). Also ``service.check_only`` end to end on a sample (normalizing, the
    audit record and its commit included).
baseline, check
    The same exact lookup with PostgreSQL's index scans switched off (a sequential
    scan of the whole table, what an unindexed list of targets costs), on a sample of
    ``--baseline-queries`` queries.
ours, register_many
    ``service.register_many`` (what an import calls) with ``--many-rows`` new phones
    for one case, after the bulk load: bulk.load on one connection, every one checked
    for matches against the N registered, one audit record, the commit.
baseline, bulk
    ``service.register`` one identifier per call (ORM rows, the audit record, one
    commit each) on a sample of ``--baseline-rows``.
CPU
    The machine may be shared: the bulk result also gives CPU seconds (this process
    with its workers, and the PostgreSQL server's processes) per row, and
    ``cpu_bound_per_s``, the rate the machine's cores would give to this load alone.

``ratio`` is baseline check p99 over ours (blind mode, the production default);
``ratio_vs_register_one_by_one`` is ours bulk rate over the baseline's. ``modes``
holds both modes' figures and ``blind_cost`` what the blind index costs.
Writes bench/results/target_check.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sqlalchemy as sa

from scripts import services
from taskforce import create_app
from taskforce.accounts.permissions import Actor
from taskforce.extensions import db

FIRST = ["JOHN", "MARIA", "JAMES", "ANA", "ROBERT", "LUIS", "MICHAEL", "ROSA", "DAVID", "LINDA",
         "CARLOS", "SARAH", "JOSE", "KAREN", "DANIEL", "NANCY", "MIGUEL", "LISA", "KEVIN", "EMMA",
         "BRIAN", "OLGA", "ERIC", "NINA", "ANDRE", "IRINA", "TYRONE", "MEI", "AHMED", "FATIMA"]
LAST = ["SMITH", "GARCIA", "JOHNSON", "MARTINEZ", "BROWN", "LOPEZ", "DAVIS", "GONZALEZ",
        "WILSON", "PEREZ", "ANDERSON", "SANCHEZ", "THOMAS", "RAMIREZ", "MOORE", "TORRES",
        "JACKSON", "NGUYEN", "WHITE", "KIM", "HARRIS", "PATEL", "CLARK", "IVANOV", "LEWIS",
        "CHEN", "WALKER", "OKAFOR", "HALL", "KOWALSKI"]
SLIPS = {"JOHN": "JON", "MARIA": "MARIAH", "SMITH": "SMYTH", "GARCIA": "GARSIA",
         "BROWN": "BROWNE", "LOPEZ": "LOPES", "KAREN": "KAREN", "ERIC": "ERIK"}


WARMUP = 50


def machine() -> dict:
    load = Path("/proc/loadavg")  # a shared machine: how busy it was at the end
    return {"cores": os.cpu_count(), "python": platform.python_version(),
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "loadavg": load.read_text().split()[:3] if load.exists() else None}


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))] if s else float("nan")


def latency(ms: list[float]) -> dict:
    return {"p50_ms": round(pct(ms, 50), 3), "p95_ms": round(pct(ms, 95), 3),
            "p99_ms": round(pct(ms, 99), 3), "mean_ms": round(statistics.fmean(ms), 3),
            "queries": len(ms)}


AREAS = [201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219,
         224, 225, 228, 229, 231, 234, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262, 267,
         269, 270, 272, 276, 281, 301, 302, 303, 304, 305, 307, 308, 309, 310, 312, 313]
VALID = len(AREAS) * 100  # numbers strict validation accepts: NXX-555-0100..0199


def valid_phone(j: int) -> str:
    """The j-th number reserved for fiction (valid for libphonenumber, j < VALID)."""
    return f"+1{AREAS[j // 100]}55501{j % 100:02d}"


def phone(i: int) -> str:
    """The i-th fictional number: a bijection of i onto 10-digit NANP-looking numbers
    (these need not pass strict validation: they arrive normalized)."""
    n = (i * 2_654_435_761 + 1_234_567) % 8_000_000_000 + 2_000_000_000
    return f"+1{n}"


def phone_at(i: int, n_persons: int) -> str:
    """The phone registered at row i: the first VALID phone rows are valid numbers."""
    return valid_phone(i - n_persons) if i - n_persons < VALID else phone(i)


def person(i: int) -> tuple[tuple[str, ...], date]:
    """The i-th fictional person; (name, date of birth) is unique for i < 14.7 million:
    the day cycles through 45 years and, for each day, the 900 name pairs are a
    permutation (multiplier 7918 keeps k -> name pair one-to-one mod 900)."""
    days = 45 * 365
    d, k = i % days, i // days
    combo = (k + 7918 * i) % (len(FIRST) * len(LAST))
    first, last = FIRST[combo // len(LAST)], LAST[combo % len(LAST)]
    return tuple(sorted({first, last})), date(1960, 1, 1) + timedelta(days=d)


def progress(label: str, done: int, total: int, t0: float) -> None:
    rate = done / max(1e-9, time.perf_counter() - t0)
    print(f"\r  {label}: {done:,}/{total:,} ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- setup

def make_app(url: str, blind_on: bool, instance: Path):
    app = create_app(environ={
        "TASKFORCE_ENV": "development", "TASKFORCE_INSTANCE": str(instance),
        "SECRET_KEY": "bench-only-secret-key-" + "x" * 20, "DATABASE_URL": url,
        "DECONFLICTION_BLIND_INDEX": "1" if blind_on else "0",
        "DECONFLICTION_KEY": "bench-only-deconfliction-key-" + "y" * 20,
    })
    app.config["DECONFLICTION_BLIND_INDEX"] = blind_on  # until config/ reads the setting
    app.config["DECONFLICTION_KEY"] = "bench-only-deconfliction-key-" + "y" * 20
    return app


def seed_people_and_cases() -> tuple[list[int], list[int], list[Actor]]:
    from taskforce.accounts import service as accounts
    from taskforce.investigations import service as cases

    console = Actor.system("bench")
    case_ids, agency_ids, actors = [], [], []
    for k, (name, level, ori) in enumerate([("Springfield PD", "local", "IL0160000"),
                                            ("Illinois State Police", "state", "IL0840000"),
                                            ("HSI Chicago", "federal", "ILHSI0000")]):
        agency = accounts.create_agency(actor=console, name=name, level=level, ori=ori)
        user, _ = accounts.create_user(actor=console, username=f"bench{k}",
                                       full_name=f"Bench Detective {k}",
                                       email=f"bench{k}@example.gov", agency_id=agency.id,
                                       roles=["investigator"],
                                       password=f"correct horse battery bench {k}")
        actor = Actor.for_user(user)
        actors.append(actor)
        for j in range(10):
            case = cases.open_case(actor=actor, title=f"Bench case {k}-{j}",
                                   offences=["sex_trafficking"])
            case_ids.append(case.id)
            agency_ids.append(agency.id)
    return case_ids, agency_ids, actors


def bench_entries(start: int, stop: int, n_persons: int, case_ids: list[int],
                  agency_ids: list[int]) -> list:
    """Registrations [start, stop) as bulk.Entry (normalized identifiers, as an import
    hands them over): runs in a worker process of bulk.load_parallel."""
    from taskforce.deconfliction.bulk import Contact, Entry

    contact = Contact(user_id=None, name="Bench Detective", email="bench@example.gov")
    n_cases = len(case_ids)
    out = []
    for i in range(start, stop):
        c = i % n_cases
        if i < n_persons:
            words, born = person(i)
            kind, value = "person", "|".join(words) + "|" + born.isoformat()
        else:
            kind, value = "phone", phone_at(i, n_persons)
        out.append(Entry(kind, value, case_ids[c], agency_ids[c], contact))
    return out


def postgres_cpu_s() -> float:
    """CPU seconds the PostgreSQL server has used so far: the postmaster with its
    reaped children (backends that have exited) and its live children. With the
    Python side's, it gives a figure the other loads of a shared machine do not
    inflate: CPU per row."""
    backend = db.session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    db.session.rollback()
    postmaster = int(_stat(backend)[1])
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat(int(entry))
        except OSError:
            continue
        if int(entry) == postmaster:
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        elif int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: state, ppid, ... (utime is [11])."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def python_cpu_s() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bulk_load(n: int, persons: float, ring, case_ids: list[int], agency_ids: list[int],
              workers: int) -> dict:
    """N registrations through the product's bulk path (deconfliction.bulk.load_parallel,
    what a large load runs; service.register_many runs its prepare + load for one
    case), every index in place, committed a batch at a time (timed)."""
    from functools import partial

    from taskforce.deconfliction import bulk

    n_persons = int(n * persons)
    now = datetime.now(UTC)
    stamp = bulk.Stamp(registered_at=now, expires_at=now + timedelta(days=730))
    sources = [partial(bench_entries, s, min(n, s + bulk.CHUNK), n_persons, case_ids,
                       agency_ids) for s in range(0, n, bulk.CHUNK)]
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # what an earlier mode left in shared buffers and the WAL is written out now,
        # not by the checkpointer during this load (its CPU would count as this load's)
        conn.execute(sa.text("CHECKPOINT"))
    cpu0 = (python_cpu_s(), postgres_cpu_s())
    t0 = time.perf_counter()
    out = bulk.load_parallel(db.engine, sources, ring=ring, stamp=stamp, workers=workers,
                             progress=lambda done: progress("bulk registration", done, n, t0))
    seconds = time.perf_counter() - t0
    cpu = {"python_s": round(python_cpu_s() - cpu0[0], 1),  # main process and the workers
           "postgres_s": round(postgres_cpu_s() - cpu0[1], 1)}
    cores = os.cpu_count() or 1
    print(file=sys.stderr)
    assert out["created"] == n, (out, n)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE target_registrations"))
        conn.execute(sa.text("VACUUM ANALYZE person_blocks"))
    return {"per_s": round(n / seconds), "seconds": round(seconds, 1), "persons": n_persons,
            "person_blocks": out["blocks"], "workers": workers,
            "fast_batches": out["fast_batches"], "careful_batches": out["careful_batches"],
            # where the workers' time went, summed over them: preparing batches, and
            # bulk.load (PostgreSQL writing rows and keeping every index)
            "prepare_s": out["prepare_s"], "load_s": out["load_s"],
            # CPU per row, which a busy machine does not inflate as it does wall time, and
            # the rate the machine's cores would give if the load used nothing else
            "cpu_s": cpu,
            "cpu_us_per_row": {k[:-2]: round(v / n * 1e6, 2) for k, v in cpu.items()},
            "cpu_bound_per_s": round(n / max(1e-9, sum(cpu.values()) / cores))}


# --------------------------------------------------------------------------- checks

def time_checks(n: int, persons: float, queries: int, ring) -> dict:
    from taskforce.deconfliction import matching
    from taskforce.graph.identifiers import Identifier

    rnd = random.Random(7)
    n_persons = int(n * persons)
    now = datetime.now(UTC)
    phones_ms, people_ms, found_phone, found_people = [], [], 0, 0
    for q in range(WARMUP):  # not timed: statement caches, the index's upper pages
        value = phone_at(rnd.randrange(n_persons, n), n_persons)
        matching.find([matching.make_probe(Identifier("phone", value), ring)], ring=ring,
                      now=now)
        db.session.rollback()
    for q in range(queries):
        if q % 2 == 0:
            value = phone_at(rnd.randrange(n_persons, n), n_persons)  # registered
        else:
            value = phone(n + rnd.randrange(0, 10 * n))  # never registered
        t0 = time.perf_counter()
        probe = matching.make_probe(Identifier("phone", value), ring)
        found = matching.find([probe], ring=ring, now=now)
        phones_ms.append((time.perf_counter() - t0) * 1000)
        found_phone += bool(found)
        db.session.rollback()
    if n_persons:
        for _ in range(queries):
            words, born = person(rnd.randrange(0, n_persons))
            slipped = tuple(sorted(SLIPS.get(w, w) for w in words))
            value = "|".join(slipped) + "|" + born.isoformat()
            t0 = time.perf_counter()
            probe = matching.make_probe(Identifier("person", value), ring)
            found = matching.find([probe], ring=ring, now=now)
            people_ms.append((time.perf_counter() - t0) * 1000)
            found_people += bool(found)
            db.session.rollback()
    return {"phone": latency(phones_ms), "phone_found": found_phone,
            "person": latency(people_ms) if people_ms else None, "person_found": found_people}


def time_service_checks(n: int, persons: float, queries: int, actor: Actor) -> dict:
    from taskforce.deconfliction import service

    rnd = random.Random(11)
    n_persons = int(n * persons)
    ms = []
    valid = min(VALID, n - n_persons)
    for _ in range(queries):
        number = valid_phone(rnd.randrange(0, valid))  # registered, as a person would type it
        t0 = time.perf_counter()
        service.check_only(actor=actor, identifiers=[("phone", number)])
        ms.append((time.perf_counter() - t0) * 1000)
    return latency(ms)


def time_naive_checks(n: int, persons: float, queries: int, ring) -> dict:
    """The exact lookup with index scans off: a sequential scan of the whole table."""
    from taskforce.deconfliction.models import TargetRegistration as R

    rnd = random.Random(13)
    n_persons = int(n * persons)
    now = datetime.now(UTC)
    ms = []
    with db.engine.connect() as conn:
        for stmt in ("SET enable_indexscan = off", "SET enable_bitmapscan = off",
                     "SET enable_indexonlyscan = off"):
            conn.execute(sa.text(stmt))
        for _ in range(queries):
            value = phone_at(rnd.randrange(n_persons, n), n_persons)
            t0 = time.perf_counter()
            key = ring.value_key("phone", value)
            rows = conn.execute(sa.select(R.id, R.agency_id, R.poc_name).where(
                R.key64 == ring.key64("phone", key), R.kind == "phone", R.value_key == key,
                R.scheme == ring.scheme, R.expires_at > now)).all()
            ms.append((time.perf_counter() - t0) * 1000)
            assert rows, "the naive scan must find what is registered"
        conn.rollback()
    return latency(ms)


def time_register_one_by_one(rows: int, actors: list[Actor], case_ids: list[int]) -> dict:
    from taskforce.deconfliction import service

    t0 = time.perf_counter()
    for i in range(rows):
        actor = actors[0]
        service.register(actor=actor, case_id=case_ids[0],
                         identifiers=[("phone", f"+1{AREAS[-1 - i // 100]}55501{i % 100:02d}")])
    seconds = time.perf_counter() - t0
    return {"per_s": round(rows / seconds, 1), "rows": rows}


def time_register_many(n: int, rows: int, actor: Actor, case_id: int) -> dict:
    """service.register_many, what an import calls: `rows` new phones into one case
    (normalized, as the graph hands them over), written by bulk.load, each one
    checked against the N registered (exact and possible), audited, committed."""
    from taskforce.deconfliction import service
    from taskforce.graph.identifiers import Identifier

    found = [Identifier("phone", phone(12 * n + i)) for i in range(rows)]  # never registered
    t0 = time.perf_counter()
    result = service.register_many(actor=actor, case_id=case_id, identifiers=found)
    seconds = time.perf_counter() - t0
    assert result.created == rows and not result.hits, (result.created, len(result.hits))
    return {"per_s": round(rows / seconds), "rows": rows, "seconds": round(seconds, 2)}


# --------------------------------------------------------------------------- main

def run_mode(server, name: str, blind_on: bool, args, workdir: Path) -> dict:
    from taskforce.deconfliction import blind

    dbname = f"bench_{name}"
    admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{dbname}"'))
    admin.dispose()
    url = sa.engine.make_url(server.url).set(database=dbname).render_as_string(
        hide_password=False)
    app = make_app(url, blind_on, workdir / f"instance-{name}")
    with app.app_context():
        db.create_all()
        ring = blind.keyring(app)
        assert ring.blind == blind_on
        case_ids, agency_ids, actors = seed_people_and_cases()
        print(f"[{name}] loading {args.n:,} registrations", file=sys.stderr)
        bulk = bulk_load(args.n, args.persons, ring, case_ids, agency_ids, args.workers)
        print(f"[{name}] timing checks", file=sys.stderr)
        checks = time_checks(args.n, args.persons, args.queries, ring)
        service_checks = time_service_checks(args.n, args.persons, args.service_queries,
                                             actors[1])
        naive = time_naive_checks(args.n, args.persons, args.baseline_queries, ring)
        one_by_one = time_register_one_by_one(args.baseline_rows, actors, case_ids)
        print(f"[{name}] timing register_many", file=sys.stderr)
        many = time_register_many(args.n, args.many_rows, actors[0], case_ids[1])
        size = db.session.execute(sa.text(
            "SELECT pg_total_relation_size('target_registrations'),"
            " pg_total_relation_size('person_blocks'),"
            " pg_indexes_size('target_registrations')")).one()
        index_sizes = {name: round(b / 2**20) for name, b in db.session.execute(sa.text(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index"
            " WHERE indrelid = 'target_registrations'::regclass"))}
        db.session.remove()
        db.engine.dispose()
    admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # the next mode starts on a server holding nothing else
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}"'))
    admin.dispose()
    out = {"blind": blind_on, "bulk": bulk, "check": checks, "service_check_only": service_checks,
           "naive_scan_check": naive, "register_one_by_one": one_by_one,
           "register_many": many,
           "table_mb": round(size[0] / 2**20), "blocks_mb": round(size[1] / 2**20),
           "indexes_mb": round(size[2] / 2**20), "index_mb": index_sizes}
    print(f"[{name}] {json.dumps(out)}", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2_000_000, help="registrations per mode")
    ap.add_argument("--persons", type=float, default=0.02, help="share of people")
    ap.add_argument("--queries", type=int, default=2000, help="checks timed per kind")
    ap.add_argument("--service-queries", type=int, default=200)
    ap.add_argument("--baseline-queries", type=int, default=20)
    ap.add_argument("--baseline-rows", type=int, default=300)
    ap.add_argument("--many-rows", type=int, default=100_000,
                    help="identifiers of one service.register_many call (an import's)")
    ap.add_argument("--modes", default="plain,blind")
    ap.add_argument("--workers", type=int, default=max(2, os.cpu_count() or 2),
                    help="processes preparing and loading batches, each on its connection")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "target_check.json"))
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-target-"))
    server = services.start_postgres(workdir / "pg")
    try:
        modes = {}
        for name in args.modes.split(","):
            modes[name] = run_mode(server, name, name == "blind", args, workdir)
    finally:
        server.stop()
    main_mode = modes.get("blind") or next(iter(modes.values()))
    ours = {
        "blind": main_mode["blind"],
        "p50_ms": main_mode["check"]["phone"]["p50_ms"],
        "p95_ms": main_mode["check"]["phone"]["p95_ms"],
        "p99_ms": main_mode["check"]["phone"]["p99_ms"],
        "person_p99_ms": (main_mode["check"]["person"] or {}).get("p99_ms"),
        "service_check_only_p99_ms": main_mode["service_check_only"]["p99_ms"],
        "per_s": main_mode["bulk"]["per_s"],
    }
    baseline = {
        "what": "the same exact lookup as a sequential scan (index scans off), on a sample "
                "of queries; bulk: service.register one identifier per call, on a sample",
        "p50_ms": main_mode["naive_scan_check"]["p50_ms"],
        "p95_ms": main_mode["naive_scan_check"]["p95_ms"],
        "p99_ms": main_mode["naive_scan_check"]["p99_ms"],
        "queries": main_mode["naive_scan_check"]["queries"],
        "per_s": main_mode["register_one_by_one"]["per_s"],
    }
    result = {
        "bench": "target_check",
        "n": args.n,
        "ours": ours,
        "baseline": baseline,
        "ratio": round(baseline["p99_ms"] / ours["p99_ms"], 1),
        "ratio_vs_register_one_by_one": round(ours["per_s"] / baseline["per_s"], 1),
        "targets": {"check_p99_ms": 5, "bulk_per_s": 100_000, "n": 10_000_000},
        "modes": modes,
        "machine": machine(),
    }
    if "plain" in modes and "blind" in modes:
        p, b = modes["plain"], modes["blind"]
        result["blind_cost"] = {
            "check_p99_ms": round(b["check"]["phone"]["p99_ms"] - p["check"]["phone"]["p99_ms"],
                                  3),
            "person_check_p99_ms": round((b["check"]["person"] or {}).get("p99_ms", 0)
                                         - (p["check"]["person"] or {}).get("p99_ms", 0), 3),
            "bulk_per_s_ratio": round(b["bulk"]["per_s"] / p["bulk"]["per_s"], 3),
            "table_mb": b["table_mb"] - p["table_mb"],
            "indexes_mb": b["indexes_mb"] - p["indexes_mb"],
            "person_found_blind_vs_plain": [b["check"]["person_found"],
                                            p["check"]["person_found"]],
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
