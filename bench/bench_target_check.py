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
    Turning N normalized identifiers into index rows (value keys: the value, or its
    HMAC-SHA256 when blind; a person's blocking keys and sketch) and loading them
    with ``COPY`` into ``target_registrations`` / ``person_blocks`` with every index
    in place, committed. ``--workers`` processes derive chunks of 50,000 rows
    (one HMAC per row when blind), each sorted by the unique index's key
    (``--unsorted`` to compare), while ``--loaders`` connections COPY them, one
    transaction per chunk with ``SET LOCAL synchronous_commit = off`` (this load
    only; the bench server has it off anyway). The result says how long the main
    process waited for derived rows and how long the loaders spent in COPY. This
    is the load an import or a rebuild does; identifiers arrive normalized from the
    graph (normalizing is the graph's cost, not timed).
ours, check
    ``matching.find`` for one identifier (what ``register`` and ``check_only`` run
    per identifier): key derivation, the (kind, value_key) index seek among live
    rows, and for people the block lookup and scoring. ``--queries`` phones, half
    registered, half not, and as many people with a spelling slip ("Jon" for
    "John"). Also ``service.check_only`` end to end on a sample (normalizing, the
    audit record and its commit included).
baseline, check
    The same exact lookup with PostgreSQL's index scans switched off (a sequential
    scan of the whole table, what an unindexed list of targets costs), on a sample of
    ``--baseline-queries`` queries.
baseline, bulk
    ``service.register`` one identifier per call (ORM rows, the audit record, one
    commit each) on a sample of ``--baseline-rows``.

``ratio`` is baseline check p99 over ours (blind mode, the production default);
``ratio_vs_register_one_by_one`` is ours bulk rate over the baseline's. ``modes``
holds both modes' figures and ``blind_cost`` what the blind index costs.
Writes bench/results/target_check.json.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
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
    return {"cores": os.cpu_count(), "python": platform.python_version(),
            "when": datetime.now(UTC).isoformat(timespec="seconds")}


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


def _index_rows(task: tuple) -> tuple[str, str, int]:
    """COPY text for registrations [start, stop): what `register` derives per
    identifier (value key, a person's blocking keys and sketch). Runs in a worker
    process, so key derivation (HMAC-SHA256 per row when blind: the bulk load's
    bottleneck on one core) proceeds while the main process streams the previous
    chunk into PostgreSQL."""
    from taskforce.deconfliction import matching
    from taskforce.deconfliction.blind import Keyring

    start, stop, n_persons, blind_on, key, case_ids, agency_ids, times, sort = task
    ring = Keyring(blind=True, key=key) if blind_on else Keyring(False)
    scheme = ring.scheme
    value_key = ring.value_key
    tail = f"\tBench Detective\t\tbench@example.gov\t{times}\n"
    regs: list[tuple] = []
    blocks: list[str] = []
    n_cases = len(case_ids)
    for i in range(start, stop):
        rid = i + 1
        c = i % n_cases
        if i < n_persons:
            words, born = person(i)
            value = "|".join(words) + "|" + born.isoformat()
            kind = "person"
            sketch = json.dumps(matching.person_sketch(words, born, ring)) \
                if blind_on else "\\N"
            blocks.extend(f"{rid}\t{k}\n" for k in matching.person_block_keys(words, born, ring))
        else:
            kind, value, sketch = "phone", phone_at(i, n_persons), "\\N"
        hint = "\\N" if blind_on else value
        vk = value_key(kind, value)
        line = (f"{rid}\t{kind}\t{vk}\t{scheme}\t{hint}\t{sketch}"
                f"\t{agency_ids[c]}\t{case_ids[c]}{tail}")
        regs.append((kind, vk, case_ids[c], line))
    if sort:  # in the unique index's order: (kind, value_key, case_id, scheme)
        regs.sort()
    return "".join(r[-1] for r in regs), "".join(blocks), len(blocks)


COPY_REGS = ("COPY target_registrations (id, kind, value_key, scheme, display_hint, sketch,"
             " agency_id, case_id, poc_name, poc_phone, poc_email, registered_at, expires_at)"
             " FROM STDIN")
COPY_BLOCKS = "COPY person_blocks (registration_id, block_key) FROM STDIN"


def bulk_load(n: int, persons: float, ring, case_ids: list[int], agency_ids: list[int],
              workers: int, loaders: int = 2, sort: bool = True) -> dict:
    """Index rows for n identifiers, COPYed in with every index in place (timed):
    `workers` processes derive the rows; `loaders` connections COPY the chunks as
    they come, each chunk in a transaction of its own (PostgreSQL's work, writing
    the rows and maintaining the indexes, then runs on as many backends: on one
    it was 88-90% of the time). Each transaction sets ``synchronous_commit`` off
    (SET LOCAL: this load only): a crash can lose the last chunks committed, never
    corrupt anything, and a load is re-run from its source anyway. With `sort`,
    each chunk arrives ordered by index key, so its inserts walk the unique index
    from left to right instead of jumping about it."""
    import queue
    import threading

    n_persons = int(n * persons)
    now = datetime.now(UTC)
    expires = now + timedelta(days=730)
    times = f"{now.isoformat()}\t{expires.isoformat()}"
    chunk = 50_000
    tasks = [(s, min(n, s + chunk), n_persons, ring.blind, ring.key, case_ids, agency_ids,
              times, sort) for s in range(0, n, chunk)]
    totals = {"blocks": 0, "done": 0, "copy_s": 0.0}
    lock = threading.Lock()
    work: queue.Queue = queue.Queue(maxsize=2 * loaders)
    errors: list[BaseException] = []

    engine = db.engine  # the threads have no app context

    def loader() -> None:
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            while (item := work.get()) is not None:
                regs, blocks, n_blocks = item
                t2 = time.perf_counter()
                cur.execute("SET LOCAL synchronous_commit = off")
                with cur.copy(COPY_REGS) as cp:
                    cp.write(regs)
                if n_blocks:
                    with cur.copy(COPY_BLOCKS) as cp:
                        cp.write(blocks)
                raw.commit()
                with lock:
                    totals["copy_s"] += time.perf_counter() - t2
                    totals["blocks"] += n_blocks
                    totals["done"] += regs.count("\n")
                    progress("bulk registration", totals["done"], n, t0)
        except BaseException as exc:  # noqa: BLE001  (raised again by the main thread)
            errors.append(exc)
            while work.get() is not None:  # keep the producer from blocking
                pass
        finally:
            raw.close()

    wait_s = 0.0
    t0 = time.perf_counter()
    threads = [threading.Thread(target=loader, daemon=True) for _ in range(loaders)]
    for t in threads:
        t.start()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        rows = pool.imap(_index_rows, tasks)
        while True:
            t1 = time.perf_counter()
            try:
                item = next(rows)
            except StopIteration:
                break
            wait_s += time.perf_counter() - t1
            work.put(item)
        for _ in threads:
            work.put(None)
        for t in threads:
            t.join()
    seconds = time.perf_counter() - t0
    print(file=sys.stderr)
    if errors:
        raise errors[0]
    assert totals["done"] == n, (totals["done"], n)
    with db.engine.connect() as conn:
        conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('target_registrations', "
                             "'id'), :n)"), {"n": n + 1})
        conn.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE target_registrations"))
        conn.execute(sa.text("VACUUM ANALYZE person_blocks"))
    return {"per_s": round(n / seconds), "seconds": round(seconds, 1), "persons": n_persons,
            "person_blocks": totals["blocks"], "workers": workers, "loaders": loaders,
            "sorted_chunks": sort,
            # where the time went: the main thread waiting for derived rows, and the
            # loaders' COPY time summed over the loaders (PostgreSQL writing rows and
            # maintaining every index)
            "waiting_for_rows_s": round(wait_s, 1), "copy_s": round(totals["copy_s"], 1)}


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
                R.kind == "phone", R.value_key == key, R.scheme == ring.scheme,
                R.expires_at > now)).all()
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
        bulk = bulk_load(args.n, args.persons, ring, case_ids, agency_ids, args.workers,
                         loaders=args.loaders, sort=not args.unsorted)
        print(f"[{name}] timing checks", file=sys.stderr)
        checks = time_checks(args.n, args.persons, args.queries, ring)
        service_checks = time_service_checks(args.n, args.persons, args.service_queries,
                                             actors[1])
        naive = time_naive_checks(args.n, args.persons, args.baseline_queries, ring)
        one_by_one = time_register_one_by_one(args.baseline_rows, actors, case_ids)
        size = db.session.execute(sa.text(
            "SELECT pg_total_relation_size('target_registrations'),"
            " pg_total_relation_size('person_blocks')")).one()
        db.session.remove()
        db.engine.dispose()
    out = {"blind": blind_on, "bulk": bulk, "check": checks, "service_check_only": service_checks,
           "naive_scan_check": naive, "register_one_by_one": one_by_one,
           "table_mb": round(size[0] / 2**20), "blocks_mb": round(size[1] / 2**20)}
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
    ap.add_argument("--modes", default="plain,blind")
    ap.add_argument("--workers", type=int, default=max(2, os.cpu_count() or 2),
                    help="processes deriving index rows during the bulk load")
    ap.add_argument("--loaders", type=int, default=2,
                    help="connections COPYing derived chunks into PostgreSQL at once")
    ap.add_argument("--unsorted", action="store_true",
                    help="COPY each chunk in generation order, not in index-key order")
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
            "person_found_blind_vs_plain": [b["check"]["person_found"],
                                            p["check"]["person_found"]],
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
