#!/usr/bin/env python3
"""Evidence ingest: a large file through the HTTP API into S3, against baselines.

    python bench/bench_evidence_ingest.py                 # 1 GiB, 3 runs each
    python bench/bench_evidence_ingest.py --size 5G --runs 1

Everything runs here, in the same run, on the same S3 server (versitygw
started by scripts/services.py, bucket with object lock):

* ours      POST /api/v1/cases/<id>/evidence with the file as the raw body,
            to the app served by werkzeug in a process of its own: streamed
            into S3 as one PUT of the declared length to a blob key of its own
            (each 8 MiB buffer on the socket while the next is read and its
            SHA-256 taken on a thread; the MD5 is the server's, the PUT's ETag,
            computed as the bytes stream in; then a small locked pointer under
            the content key: no server-side copy), the record and its custody events
            committed. The peak RSS of that process is read from /proc (VmHWM):
            `rss_at_start_mb` once the app is up, `rss_growth_mb` what the
            uploads added.
* ours with the client's hash   the same with X-Content-SHA256 sent (hashed
            before the clock starts, as a forensic tool's report gives it),
            checked before the pointer is written (`ours_client_hash`,
            `ratio_client_hash`).
* baseline  minio-py `fput_object` of the same file into the same bucket, same
            part size: no hashing of ours, no database, no HTTP hop. The bound
            the issue names; `ratio` is ours over it (greater is better).
* single PUT  the same file streamed as one unsigned PUT by the same client
            class as ours, no hashing, no database, no HTTP hop: the fastest
            upload this server takes, so `ratio_vs_single_put` is what our
            hashing, HTTP hop and database cost on top of the same transfer.
* naive     hash the file (SHA-256 and MD5), then `fput_object` it
            (`ratio_vs_naive`).
* sha256sum the coreutils tool's speed on the file, for reference.

Each way is timed twice: until the store answers (`seconds`, `ratio`), and until
what it wrote is on the disk (`durable_seconds`, `ratio_durable`: os.sync after the
answer; MinIO syncs before it answers, versitygw does not).

Besides the wall time, each way's CPU seconds are read from /proc for the
app, the S3 server and this process (the minio client of the baselines):
on a shared machine the wall time swings with the load, the CPU spent much
less, and on 2 cores the wall time of a well overlapped upload is bound by
the sum over 2. The load average is recorded before and after.

Each run of ours changes the file's first bytes, so every upload is new
content (a repeat of the same bytes would be deduplicated: nothing written).
Before every timed run (outside the clock) what the store holds is synced and
evicted from the page cache, and each round starts with a different way: a 1 GiB
upload leaves seconds of writeback and a GiB of cache behind, which otherwise
slows whichever way comes next.
Writes bench/results/evidence_ingest[_<size>].json.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts import services
from taskforce.evidence.storage import S3_PART_SIZE as PART  # the same parts for all
from taskforce.evidence.storage import S3Store, _OneShotBody

CHUNK = 8 * 1024 * 1024


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


# --- the app, in a process of its own -------------------------------------------------------

def serve(info_path: str, port: int) -> None:
    from werkzeug.serving import make_server

    from taskforce import create_app
    from taskforce.accounts import service as accounts
    from taskforce.accounts.permissions import Actor
    from taskforce.extensions import db
    from taskforce.investigations import service as cases

    app = create_app()
    if "evidence" not in app.blueprints:
        from taskforce import evidence

        evidence.init_app(app)
    with app.app_context():
        db.create_all()
        console = Actor.system("bench")
        agency = accounts.create_agency(actor=console, name="Bench Agency", level="state",
                                        ori="TX0000001")
        user, _ = accounts.create_user(actor=console, username="bench", full_name="Bench User",
                                       email="bench@example.gov", agency_id=agency.id,
                                       roles=["investigator"],
                                       password="correct horse " + secrets.token_hex(8) + " staple")
        accounts.enrol_for_console(actor=console, user_id=user.id)
        actor = Actor.for_user(user)
        _, token = accounts.create_token(actor=actor, name="bench", scope="write",
                                         expires_in_days=1)
        case = cases.open_case(actor=actor, title="Bench", offences=["sex_trafficking"])
        Path(info_path).write_text(json.dumps({"token": token, "case_id": case.id}))
    server = make_server("127.0.0.1", port, app, threaded=True)
    server.serve_forever()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


class CpuMeter:
    """CPU seconds spent by the app, the S3 server and this process during a block."""

    def __init__(self, app_pid: int, s3_pid: int):
        self.pids = {"app": app_pid, "s3": s3_pid}
        self.runs: list[dict[str, float]] = []

    def __enter__(self) -> Self:
        self._start = {k: cpu_seconds(p) for k, p in self.pids.items()}
        self._client = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        run = {k: cpu_seconds(p) - self._start[k] for k, p in self.pids.items()}
        run["client"] = time.process_time() - self._client
        self.runs.append(run)

    def summary(self) -> dict[str, float]:
        keys = ("app", "s3", "client")
        out = {k: round(statistics.median(r[k] for r in self.runs), 2) for k in keys}
        out["total"] = round(statistics.median(sum(r[k] for k in keys) for r in self.runs), 2)
        return out


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the runs -----------------------------------------------------------------------------

def make_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(CHUNK, left)
            f.write(os.urandom(n))
            left -= n


def renew(path: Path) -> None:
    """New content for the next run: 32 fresh bytes at the start."""
    with open(path, "r+b") as f:
        f.write(secrets.token_bytes(32))


def upload_ours(port: int, token: str, case_id: int, path: Path,
                sha256: str | None = None) -> dict:
    size = path.stat().st_size
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600, blocksize=1 << 20)
    headers = {"Authorization": f"Bearer {token}", "Content-Length": str(size),
               "Content-Type": "application/octet-stream", "Accept": "application/json"}
    if sha256:
        headers["X-Content-SHA256"] = sha256
    with open(path, "rb") as body:
        conn.request("POST", f"/api/v1/cases/{case_id}/evidence?description=bench&filename="
                     f"{path.name}", body=body, headers=headers)
        resp = conn.getresponse()
        payload = json.loads(resp.read() or b"{}")
    conn.close()
    if resp.status != 201:
        raise SystemExit(f"upload refused: {resp.status} {payload}")
    return payload


def settle(store: Path) -> None:
    """Before each timed run, outside the clock, every way starts from the same state:
    what the runs before wrote to the store is on the disk (synced) and out of the
    page cache (evicted), so no way pays for the writeback or the memory of the one
    before it (left alone, one 1 GiB run took from 2.8 to 5.6 s depending on what ran
    before it). The input file stays cached for all."""
    os.sync()
    for path in store.rglob("*"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:  # a folder, or gone meanwhile
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    time.sleep(1)


def hash_file(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1G", help="file size (e.g. 1G, 5G, 256M)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each way (median taken)")
    parser.add_argument("--workdir", help="where the file and the S3 data go (default: a temp "
                                          "folder on the same disk as /tmp)")
    parser.add_argument("--out", help="where the JSON goes (default: bench/results/"
                                      "evidence_ingest[_<size>].json)")
    parser.add_argument("--serve", nargs=2, metavar=("INFO", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0

    size = parse_size(args.size)
    base = Path(args.workdir or tempfile.mkdtemp(prefix="bench-evidence-"))
    base.mkdir(parents=True, exist_ok=True)
    s3 = services.start_s3(base / "s3")
    app_proc = None
    try:
        data = base / "exhibit.bin"
        print(f"writing a {human(size)} file to {data}", file=sys.stderr)
        make_file(data, size)

        t0 = time.perf_counter()
        subprocess.run(["sha256sum", str(data)], check=True, stdout=subprocess.DEVNULL)
        sha256sum_s = time.perf_counter() - t0

        port = services.free_port()
        info = base / "app.json"
        env = dict(os.environ, TASKFORCE_ENV="test", SECRET_KEY=secrets.token_hex(32),
                   TASKFORCE_INSTANCE=str(base / "instance"),
                   DATABASE_URL=f"sqlite:///{base / 'bench.db'}",
                   EVIDENCE_MAX_BYTES=str(size * 2), **s3.env())
        app_proc = subprocess.Popen([sys.executable, __file__, "--serve", str(info), str(port)],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not info.exists():
            if app_proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the app did not start: {app_proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        time.sleep(0.3)
        app = json.loads(info.read_text())
        rss_at_start = peak_rss_mb(app_proc.pid)

        client = s3.client()
        ways = ("ours", "ours_client_hash", "baseline", "single_put", "naive")
        acked: dict[str, list[float]] = {way: [] for way in ways}
        durable: dict[str, list[float]] = {way: [] for way in ways}
        cpu = {way: CpuMeter(app_proc.pid, s3.pid) for way in ways}
        print(f"app pid {app_proc.pid}, S3 server pid {s3.pid}", file=sys.stderr)
        load_before = loadavg()

        @contextlib.contextmanager
        def clock(way: str, run: int) -> Iterator[None]:
            """Two times: until the store answers, and until what it wrote is on the
            disk (os.sync after the answer: MinIO syncs before it answers, versitygw
            does not, and evidence is not stored until it is on the disk)."""
            with cpu[way]:
                t0 = time.perf_counter()
                yield
                answered = time.perf_counter() - t0
            os.sync()
            synced = time.perf_counter() - t0
            acked[way].append(answered)
            durable[way].append(synced)
            print(f"{way:<16} run {run + 1}: {answered:6.2f} s answered, {synced:6.2f} s on disk "
                  f"({size / synced / 1e6:6.1f} MB/s)", file=sys.stderr)

        def run_ours(run: int) -> None:
            renew(data)
            settle(s3.workdir)
            with clock("ours", run):
                item = upload_ours(port, app["token"], app["case_id"], data)
            if run == 0:
                expected = hash_file(data)
                assert (item["sha256"], item["md5"]) == expected, "recorded hashes differ"

        def run_ours_client_hash(run: int) -> None:
            renew(data)
            known = hash_file(data)[0]  # the client's own hash, before the clock starts
            settle(s3.workdir)
            with clock("ours_client_hash", run):
                item = upload_ours(port, app["token"], app["case_id"], data, known)
            assert item["sha256"] == known

        def drop(key: str, version_id: str | None) -> None:
            """The baselines' objects (unlocked) go once timed: at 5 GiB a run each of
            five ways would not fit on the disk. Ours are locked: they stay."""
            client.remove_object(s3.bucket, key, version_id=version_id)

        def run_baseline(run: int) -> None:
            settle(s3.workdir)
            with clock("baseline", run):
                put = client.fput_object(s3.bucket, f"bench/raw-{run}", str(data),
                                         part_size=PART)
            drop(put.object_name, put.version_id)

        raw_put = S3Store(endpoint=s3.endpoint, access_key=s3.access_key,
                          secret_key=s3.secret_key, bucket=s3.bucket).client

        def run_single_put(run: int) -> None:
            def chunks() -> Iterator[bytes]:
                with open(data, "rb") as f:
                    while block := f.read(PART):
                        yield block

            settle(s3.workdir)
            with clock("single_put", run):
                put = raw_put._execute("PUT", s3.bucket, f"bench/single-{run}",
                                       body=_OneShotBody(chunks, size),
                                       headers={"Content-Type": "application/octet-stream"})
            drop(f"bench/single-{run}", put.headers.get("x-amz-version-id"))

        def run_naive(run: int) -> None:
            settle(s3.workdir)
            with clock("naive", run):
                hash_file(data)
                put = client.fput_object(s3.bucket, f"bench/naive-{run}", str(data),
                                         part_size=PART)
            drop(put.object_name, put.version_id)

        order = [run_ours, run_ours_client_hash, run_baseline, run_single_put, run_naive]
        for run in range(args.runs):
            # each run starts a way further along, so no way always follows the same one
            for way in order[run % len(order):] + order[:run % len(order)]:
                way(run)
        rss = peak_rss_mb(app_proc.pid)
        load_after = loadavg()
    finally:
        if app_proc is not None:
            app_proc.terminate()
            app_proc.wait(10)
        s3.stop()
        if not args.workdir:
            shutil.rmtree(base, ignore_errors=True)

    def rate(way: str) -> dict:
        p50, on_disk = statistics.median(acked[way]), statistics.median(durable[way])
        return {"seconds_p50": round(p50, 3), "seconds": [round(x, 3) for x in acked[way]],
                "per_s": round(size / p50), "mb_per_s": round(size / p50 / 1e6, 1),
                "durable_seconds_p50": round(on_disk, 3),
                "durable_seconds": [round(x, 3) for x in durable[way]],
                "durable_mb_per_s": round(size / on_disk / 1e6, 1),
                "cpu_seconds_p50": cpu[way].summary()}

    def ratio(way: str, over: str = "ours", key: str = "seconds_p50") -> float:
        return round(result[way][key] / result[over][key], 3)

    result: dict = {
        "bench": "evidence_ingest",
        "n": args.runs,
        "size_bytes": size,
        "ours": {**rate("ours"), "peak_rss_mb": round(rss, 1),
                 "rss_at_start_mb": round(rss_at_start, 1),
                 "rss_growth_mb": round(rss - rss_at_start, 1),  # what the uploads added
                 "what": "HTTP API raw body -> one streamed S3 PUT to a blob key + locked "
                         "pointer under the content key (no copy), SHA-256 here and MD5 by the "
                         "store (ETag) in the same pass, record committed"},
        "ours_client_hash": {**rate("ours_client_hash"),
                             "what": "the same with X-Content-SHA256, checked before the "
                                     "pointer is written"},
        "baseline": {**rate("baseline"), "what": "minio fput_object, same file, same bucket, "
                                                 f"part size {PART}"},
        "single_put": {**rate("single_put"), "what": "the file streamed as one unsigned PUT, "
                                                     "no hashing, no database, no HTTP hop"},
        "naive": {**rate("naive"), "what": "hashlib SHA-256+MD5 over the file, then fput_object"},
        "sha256sum": {"seconds": round(sha256sum_s, 3),
                      "mb_per_s": round(size / sha256sum_s / 1e6, 1)},
    }
    # greater is better: baseline (or naive) time over ours. "durable": until on the disk
    result.update({
        "ratio": ratio("baseline"),
        "ratio_durable": ratio("baseline", key="durable_seconds_p50"),
        "ratio_vs_single_put": ratio("single_put"),
        "ratio_vs_single_put_durable": ratio("single_put", key="durable_seconds_p50"),
        "ratio_vs_naive": ratio("naive"),
        "ratio_vs_naive_durable": ratio("naive", key="durable_seconds_p50"),
        "ratio_client_hash": ratio("baseline", "ours_client_hash"),
        "ratio_client_hash_durable": ratio("baseline", "ours_client_hash",
                                           key="durable_seconds_p50"),
        # CPU of all three processes, baseline over ours: what a 2-core machine's wall-time
        # ratio tends to when neither the disk nor anything else waits
        "cpu_ratio": round(cpu["baseline"].summary()["total"]
                           / cpu["ours"].summary()["total"], 3),
        "loadavg_before": load_before, "loadavg_after": load_after,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "when": datetime.now(UTC).isoformat(timespec="seconds")},
    })
    suffix = "" if size == 1024**3 else f"_{args.size.lower()}"
    out = Path(args.out) if args.out else \
        REPO / "bench" / "results" / f"evidence_ingest{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
