#!/usr/bin/env python3
"""Integrity sweep: re-hash every stored object, against a raw streaming read.

    python bench/bench_evidence_sweep.py                  # 16 objects of 64 MiB, 3 runs
    python bench/bench_evidence_sweep.py --objects 40 --size 32M

Everything in the same run, on the same S3 server (versitygw started by
scripts/services.py, bucket with object lock), same objects:

* ours      `taskforce.evidence.tasks.sweep()`: every digital item's bytes
            streamed back (following a pointer to its blob when there is one),
            SHA-256 and size re-computed, VERIFIED appended to its custody
            ledger, its integrity and audit record written and committed, then
            orphaned uploads looked for.
* baseline  minio-py `get_object` of each object's bytes, streamed in the same
            chunk size into `hashlib.sha256`, one after another: no database,
            no ledger, no pointer look-up. `ratio` is its time over ours
            (greater is better).

Half the items are uploaded without a client hash (blob + pointer), half with
one (bytes under the content key), as the API makes them. Runs alternate
between ours and the baseline. Writes bench/results/evidence_sweep.json
(other sizes: evidence_sweep_<objects>x<size>.json).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts import services
from taskforce.evidence.storage import CHUNK


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


class Random:
    """`size` random bytes, made as they are read (never held whole)."""

    def __init__(self, size: int):
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = min(self.left, n if n and n > 0 else CHUNK)
        self.left -= n
        return os.urandom(n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=16)
    parser.add_argument("--size", default="64M", help="size of each object")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = parse_size(args.size)

    base = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    s3 = services.start_s3(base / "s3")
    try:
        environ = dict(os.environ, TASKFORCE_ENV="test", SECRET_KEY=secrets.token_hex(32),
                       TASKFORCE_INSTANCE=str(base / "instance"),
                       DATABASE_URL=f"sqlite:///{base / 'bench.db'}",
                       CELERY_BROKER_URL="", **s3.env())
        from taskforce import create_app
        from taskforce.accounts import service as accounts
        from taskforce.accounts.permissions import Actor
        from taskforce.evidence import service as evidence
        from taskforce.evidence import tasks
        from taskforce.evidence.storage import get_store
        from taskforce.extensions import db
        from taskforce.investigations import service as cases

        app = create_app(environ=environ)
        if "evidence" not in app.blueprints:
            from taskforce import evidence as evidence_pkg

            evidence_pkg.init_app(app)
        with app.app_context():
            db.create_all()
            console = Actor.system("bench")
            agency = accounts.create_agency(actor=console, name="Bench Agency", level="state",
                                            ori="TX0000001")
            user, _ = accounts.create_user(
                actor=console, username="bench", full_name="Bench User",
                email="bench@example.gov", agency_id=agency.id, roles=["investigator"],
                password="correct horse " + secrets.token_hex(8) + " staple")
            actor = Actor.for_user(user)
            case = cases.open_case(actor=actor, title="Bench", offences=["sex_trafficking"])
            store = get_store()
            print(f"storing {args.objects} objects of {size:,} bytes", file=sys.stderr)
            locations = []
            for i in range(args.objects):
                if i % 2:  # with the client's hash: the bytes under the content key
                    data = os.urandom(size)
                    item = evidence.ingest(actor=actor, case_id=case.id,
                                           stream=io.BytesIO(data),
                                           description=f"object {i}",
                                           expected_sha256=hashlib.sha256(data).hexdigest())
                    del data
                else:
                    item = evidence.ingest(actor=actor, case_id=case.id, stream=Random(size),
                                           description=f"object {i}")
                locations.append((item.sha256, store.data_location(item.sha256)))
            total = size * args.objects
            client = s3.client()

            def raw() -> float:
                t0 = time.perf_counter()
                for sha256, (key, version_id) in locations:
                    digest = hashlib.sha256()
                    resp = client.get_object(s3.bucket, key, version_id=version_id)
                    try:
                        for chunk in resp.stream(CHUNK):
                            digest.update(chunk)
                    finally:
                        resp.close()
                        resp.release_conn()
                    assert digest.hexdigest() == sha256
                return time.perf_counter() - t0

            def ours() -> float:
                t0 = time.perf_counter()
                result = tasks.sweep(store=store)
                seconds = time.perf_counter() - t0
                assert result["ok"] == args.objects and not result["failed"], result
                return seconds

            ours_s, raw_s = [], []
            for run in range(args.runs):
                ours_s.append(ours())
                raw_s.append(raw())
                print(f"run {run + 1}: ours {ours_s[-1]:6.2f} s {total / ours_s[-1] / 1e6:7.1f}"
                      f" MB/s   raw {raw_s[-1]:6.2f} s {total / raw_s[-1] / 1e6:7.1f} MB/s",
                      file=sys.stderr)
    finally:
        s3.stop()
        shutil.rmtree(base, ignore_errors=True)

    def rate(seconds: list[float]) -> dict:
        p50 = statistics.median(seconds)
        return {"seconds_p50": round(p50, 3), "seconds": [round(s, 3) for s in seconds],
                "per_s": round(total / p50), "mb_per_s": round(total / p50 / 1e6, 1),
                "objects_per_s": round(args.objects / p50, 2)}

    result = {
        "bench": "evidence_sweep",
        "n": args.runs,
        "objects": args.objects,
        "object_bytes": size,
        "total_bytes": total,
        "ours": {**rate(ours_s), "what": "tasks.sweep(): stream back, SHA-256 + size, VERIFIED "
                                         "appended and committed per item, orphan check"},
        "baseline": {**rate(raw_s), "what": "minio get_object of each object's bytes streamed "
                                            "into hashlib.sha256, one after another, no DB"},
        "ratio": round(statistics.median(raw_s) / statistics.median(ours_s), 3),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "when": datetime.now(UTC).isoformat(timespec="seconds")},
    }
    default = (args.objects, size) == (16, 64 * 1024**2)
    suffix = "" if default else f"_{args.objects}x{args.size.lower()}"
    out = REPO / "bench" / "results" / f"evidence_sweep{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
