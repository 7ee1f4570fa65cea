#!/usr/bin/env python3
"""Install, start and stop every real service taskforce talks to.

One module for all of them (DESIGN.md, "Services and how they start"):

=========  ==================================================================
neo4j      Neo4j 5.26 community: jars from Maven Central (scripts/neo4j/pom.xml,
           ``mvn dependency:copy-dependencies``), run with Java 17 through the
           launcher ``org.neo4j.server.startup.Neo4jCommand console``
s3         versitygw (posix backend, ``--versioning-dir``) built with
           ``go install``; it stands in for MinIO, which the Go module proxy
           does not serve. The bucket is created with object lock.
redis      Debian's ``redis-server``
postgres   Debian's ``postgresql`` (initdb in a throw-away folder)
smtp       ``aiosmtpd`` (PyPI) delivering into a Maildir that tests read
chromium   Debian's ``chromium`` + ``chromium-driver`` (installed, not started)
assets     the pages' JavaScript libraries (Cytoscape.js, Leaflet, Chart.js): ``npm ci``
           from package-lock.json, copied into taskforce/static/vendor/ (not started)
=========  ==================================================================

Only the standard library is imported at module level, so ``install`` runs on a
machine where the project's virtualenv does not exist yet; the Neo4j driver and
the MinIO client are imported lazily where they are needed.

Each ``start_*`` function picks free loopback ports, waits for the real protocol
to answer (Bolt, HTTP, RESP PING, pg_isready, SMTP NOOP) and returns a handle
with the connection details, ``env()`` (the app's variables for it) and
``stop()``. ``start_celery_worker`` runs the app's own Celery worker against a
broker started here; ``read_mail`` reads what the SMTP server received. Every
process started here is stopped at interpreter exit as well.

Downloads and builds are cached under ``$TASKFORCE_CACHE`` (default
``~/.cache/taskforce``) so that a second run starts in seconds.

CLI::

    python scripts/services.py install [names...]   # default: all
    python scripts/services.py start [names...]     # foreground, Ctrl-C stops
    python scripts/services.py start --dev          # local Neo4j for `make run`
    python scripts/services.py stop --dev
    python scripts/services.py status
"""
from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import email.message
import email.policy
import fcntl
import glob
import importlib.util
import io
import json
import mailbox
import os
import pwd
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Self

REPO = Path(__file__).resolve().parent.parent
NEO4J_VERSION = "5.26.21"
NEO4J_POM = REPO / "scripts" / "neo4j" / "pom.xml"
VERSITYGW_MODULE = "github.com/versity/versitygw/cmd/versitygw"
VERSITYGW_VERSION = "v1.8.0"
JAVA_MIN = 17
# Debian packages per service; chromium is for the end-to-end tests only.
APT_PACKAGES: dict[str, list[str]] = {
    "redis": ["redis-server"],
    "postgres": ["postgresql"],
    "chromium": ["chromium", "chromium-driver"],
}
# "assets" is the front-end libraries from npm (installed, not started).
SERVICES = ("neo4j", "s3", "redis", "postgres", "smtp", "chromium", "assets")
STARTABLE = ("neo4j", "s3", "redis", "postgres", "smtp")
LOOPBACK = "127.0.0.1"


class ServiceError(RuntimeError):
    """A service could not be installed or started; the message says why."""


def log(msg: str) -> None:
    print(f"[services] {msg}", flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("TASKFORCE_CACHE") or Path.home() / ".cache" / "taskforce")


# --------------------------------------------------------------------------- #
# Process handles
# --------------------------------------------------------------------------- #

# Handles whose process is ours to stop, stopped in reverse order at exit.
_LIVE: list[Handle] = []


@dataclass(eq=False, kw_only=True)
class Handle:
    """A started service: connection details in the subclasses, plus stop()."""

    name: str
    workdir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # What asks the service to shut down cleanly, and how long it gets to do so
    # before the whole process group is killed.
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 15.0
    started_in: float = 0.0  # seconds from start_*() call to ready
    cleanups: list[Callable[[], None]] = field(default_factory=list, repr=False)
    stopped: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        # Tracked from creation on, not from readiness: a process killed (or a
        # SIGTERM arriving) while a service still starts must not leave it behind.
        _LIVE.append(self)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def env(self) -> dict[str, str]:
        """The app's environment variables that point at this service."""
        return {}

    def stop(self) -> None:
        """Stop the process (signal, wait, then kill its group). Idempotent."""
        if self.stopped:  # its pid may belong to someone else by now
            return
        self.stopped = True
        if self.process is not None:
            _terminate_group(self.process, self.stop_signal, self.stop_timeout)
        while self.cleanups:
            fn = self.cleanups.pop()
            with contextlib.suppress(Exception):
                fn()
        with contextlib.suppress(ValueError):
            _LIVE.remove(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(eq=False, kw_only=True)
class Neo4jHandle(Handle):
    uri: str
    user: str
    password: str
    bolt_port: int
    http_port: int
    home: Path

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    def env(self) -> dict[str, str]:
        return {"NEO4J_URI": self.uri, "NEO4J_USER": self.user, "NEO4J_PASSWORD": self.password}


@dataclass(eq=False, kw_only=True)
class S3Handle(Handle):
    endpoint: str  # host:port, as the minio client wants it
    access_key: str
    secret_key: str
    bucket: str
    region: str = "us-east-1"
    secure: bool = False

    def env(self) -> dict[str, str]:
        return {
            "S3_ENDPOINT": self.endpoint,
            "S3_ACCESS_KEY": self.access_key,
            "S3_SECRET_KEY": self.secret_key,
            "S3_BUCKET": self.bucket,
            "S3_SECURE": "1" if self.secure else "0",
        }

    def client(self) -> Any:
        """A minio.Minio client for this server (needs the minio package)."""
        from minio import Minio

        return Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key,
                     secure=self.secure, region=self.region)


@dataclass(eq=False, kw_only=True)
class RedisHandle(Handle):
    url: str
    port: int

    def env(self) -> dict[str, str]:
        return {"CELERY_BROKER_URL": self.url}


@dataclass(eq=False, kw_only=True)
class PostgresHandle(Handle):
    url: str  # SQLAlchemy URL, postgresql+psycopg://user@127.0.0.1:port/db
    host: str
    port: int
    user: str
    dbname: str

    @property
    def dsn(self) -> str:
        """libpq form of the same address (for psycopg.connect)."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.dbname}"

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.url}


@dataclass(eq=False, kw_only=True)
class SmtpHandle(Handle):
    host: str
    port: int
    maildir: Path

    def env(self) -> dict[str, str]:
        return {"SMTP_HOST": self.host, "SMTP_PORT": str(self.port)}


@dataclass(eq=False, kw_only=True)
class CeleryWorkerHandle(Handle):
    broker_url: str
    environ: dict[str, str]  # the worker's app settings; give the same to create_app()


def _terminate_group(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Every service runs in its own session, so its pid is its process group id:
    signalling the group also reaches children (Neo4j's launcher forks the server
    JVM), and the final SIGKILL leaves nothing behind."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@atexit.register
def stop_all() -> None:
    """Stop every service this process started (also runs at interpreter exit)."""
    for handle in reversed(list(_LIVE)):
        with contextlib.suppress(Exception):
            handle.stop()


def tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


def _spawn(cmd: Sequence[str], *, log_path: Path, env: dict[str, str] | None = None,
           cwd: Path | None = None,
           user: pwd.struct_passwd | None = None) -> subprocess.Popen[bytes]:
    """Start cmd in a new session with stdout+stderr appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        kwargs: dict[str, Any] = {}
        if user is not None:  # drop root for servers that refuse it (PostgreSQL)
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        return subprocess.Popen(
            list(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=cwd, env=env, start_new_session=True, **kwargs,
        )


def _await_ready(handle: Handle, check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll check() until it returns True. Gives up (and stops the handle) when the
    process exits or the deadline passes, raising with the tail of its log."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    last: BaseException | None = None
    while True:
        if handle.process is not None and handle.process.poll() is not None:
            rc = handle.process.returncode
            handle.stop()
            raise ServiceError(
                f"{handle.name} exited with code {rc} before {what} answered\n"
                f"--- last lines of {handle.log_path} ---\n{handle.log_tail()}")
        try:
            if check():
                return
        except _Fatal as e:
            handle.stop()
            raise ServiceError(f"{handle.name}: {e}\n--- last lines of {handle.log_path} ---\n"
                               f"{handle.log_tail()}") from e
        except Exception as e:  # noqa: BLE001  (not up yet: refused, reset, driver errors...)
            last = e
        if time.monotonic() > deadline:
            handle.stop()
            raise ServiceError(
                f"{handle.name}: {what} did not answer within {timeout:.0f}s "
                f"(last error: {last!r})\n"
                f"--- last lines of {handle.log_path} ---\n{handle.log_tail()}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


class _Fatal(Exception):
    """Raised by a readiness check when waiting longer cannot help."""


def _ready(handle: Handle, t0: float) -> None:
    handle.started_in = time.monotonic() - t0


def free_port() -> int:
    """A TCP port free on the loopback address right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Nobody listens on 127.0.0.1:port. SO_REUSEADDR as the servers set it, so
    connections of a stopped server lingering in TIME_WAIT do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _run(cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
         timeout: float | None = None, quiet: bool = False, secret: str | None = None) -> None:
    """Run a setup step, printing it (with `secret` masked); raise ServiceError
    (with its output) on failure."""
    shown = " ".join("***" if secret and c == secret else str(c) for c in cmd)
    log("$ " + shown)
    res = subprocess.run(list(cmd), env=env, cwd=cwd, timeout=timeout, check=False,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    out = res.stdout.decode("utf-8", "replace")
    if not quiet and out.strip():
        print(out, end="" if out.endswith("\n") else "\n", flush=True)
    if res.returncode != 0:
        tail_text = "\n".join(out.splitlines()[-40:])
        raise ServiceError(f"command failed ({res.returncode}): {shown}\n{tail_text}")


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """One installer at a time per cache (two pytest runs may start together)."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".install.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- #
# Installing
# --------------------------------------------------------------------------- #

_apt_updated = False


def _dpkg_installed(pkg: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    res = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
    return res.returncode == 0 and b"install ok installed" in res.stdout


def ensure_apt(packages: Sequence[str], *, recommends: bool = False) -> None:
    """apt-get install the Debian packages that are missing (update once first)."""
    global _apt_updated
    missing = [p for p in packages if not _dpkg_installed(p)]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise ServiceError(f"Debian packages {missing} are missing and there is no apt-get")
    sudo: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise ServiceError(f"Debian packages {missing} are missing: run as root "
                               f"`apt-get install -y {' '.join(missing)}`")
        sudo = ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_updated:
        _run([*sudo, "apt-get", "update"], env=env, quiet=True)
        _apt_updated = True
    extra = [] if recommends else ["--no-install-recommends"]
    _run([*sudo, "apt-get", "install", "-y", *extra, *missing], env=env, quiet=True)
    still = [p for p in missing if not _dpkg_installed(p)]
    if still:
        raise ServiceError(f"apt-get did not install {still}")


def _java() -> str | None:
    """A java binary of version >= JAVA_MIN, or None."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    if shutil.which("java"):
        candidates.append(shutil.which("java") or "java")
    candidates += sorted(glob.glob(f"/usr/lib/jvm/java-{JAVA_MIN}-*/bin/java"))
    for java in candidates:
        try:
            res = subprocess.run([java, "-version"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        text = res.stdout.decode("utf-8", "replace")
        # first line: openjdk version "17.0.15" 2025-04-15
        try:
            major = int(text.split('"')[1].split(".")[0])
        except (IndexError, ValueError):
            continue
        if major >= JAVA_MIN:
            return java
    return None


def ensure_java() -> str:
    java = _java()
    if java is None:
        ensure_apt([f"openjdk-{JAVA_MIN}-jre-headless"])
        java = _java()
    if java is None:
        raise ServiceError(f"no Java >= {JAVA_MIN} found after installing openjdk-{JAVA_MIN}")
    return java


def neo4j_home() -> Path:
    return cache_dir() / f"neo4j-{NEO4J_VERSION}"


def install_neo4j() -> Path:
    """Fill <cache>/neo4j-<version>/lib with the server's jars (once)."""
    home = neo4j_home()
    lib = home / "lib"
    stamp = lib / ".complete"
    if stamp.exists():
        return home
    with _install_lock():
        if stamp.exists():
            return home
        ensure_java()
        if shutil.which("mvn") is None:
            ensure_apt(["maven"])
        build = home / "build"
        partial = home / "lib.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(lib, ignore_errors=True)
        build.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(NEO4J_POM, build / "pom.xml")  # mvn may write target/ next to it
        log(f"downloading Neo4j {NEO4J_VERSION} jars from Maven Central into {lib}")
        _run(["mvn", "-B", "--no-transfer-progress", "-f", str(build / "pom.xml"),
              f"-Dneo4j.version={NEO4J_VERSION}", "dependency:copy-dependencies",
              "-DincludeScope=runtime", f"-DoutputDirectory={partial}"], quiet=True)
        if not (partial / f"neo4j-{NEO4J_VERSION}.jar").exists():
            raise ServiceError(f"mvn finished but {partial} has no neo4j-{NEO4J_VERSION}.jar")
        partial.rename(lib)
        stamp.write_text(NEO4J_VERSION + "\n")
        shutil.rmtree(build, ignore_errors=True)
    return home


def _go() -> str:
    go = shutil.which("go")
    if go is None and Path("/usr/local/go/bin/go").exists():  # the official layout, off PATH
        go = "/usr/local/go/bin/go"
    if go is None:
        raise ServiceError(
            "Go is needed to build versitygw (go install). Debian 12's golang-go (1.19) is too "
            "old: versitygw wants Go 1.25, and Go >= 1.21 fetches that toolchain itself "
            "through the module proxy")
    return go


def versitygw_bin() -> Path:
    return cache_dir() / "bin" / "versitygw"


def install_versitygw() -> Path:
    """go install versitygw at the pinned version into <cache>/bin (once)."""
    binary = versitygw_bin()
    stamp = binary.with_name(".versitygw.version")
    if binary.exists() and stamp.exists() and stamp.read_text().strip() == VERSITYGW_VERSION:
        return binary
    with _install_lock():
        if binary.exists() and stamp.exists() and stamp.read_text().strip() == VERSITYGW_VERSION:
            return binary
        go = _go()
        # Build into a scratch GOBIN, then move: a half-written binary never
        # sits at the final path.
        scratch = Path(tempfile.mkdtemp(prefix=".gobin-", dir=cache_dir()))
        try:
            env = dict(os.environ, GOBIN=str(scratch), CGO_ENABLED="0")
            log(f"building versitygw {VERSITYGW_VERSION} "
                "(go install: a few minutes the first time)")
            _run([go, "install", f"{VERSITYGW_MODULE}@{VERSITYGW_VERSION}"], env=env)
            binary.parent.mkdir(parents=True, exist_ok=True)
            os.replace(scratch / "versitygw", binary)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        stamp.write_text(VERSITYGW_VERSION + "\n")
    return binary


def install_aiosmtpd(python: str = sys.executable) -> None:
    """aiosmtpd is a Python package (pyproject's test extra): pip install if missing."""
    if python == sys.executable:
        if importlib.util.find_spec("aiosmtpd") is not None:
            return
    elif subprocess.run([python, "-c", "import aiosmtpd"], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, check=False).returncode == 0:
        return
    _run([python, "-m", "pip", "install", "--quiet", "aiosmtpd>=1.4"])


def _postgres_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not found:
        raise ServiceError("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin")
    return Path(found[-1]).parent


# Front-end assets: npm packages whose built files the pages load from
# /static/vendor/ (the CSP allows no CDN). package-lock.json pins them; npm's
# download cache sits in <cache>/npm so a second install works offline.
VENDOR_DIR = REPO / "taskforce" / "static" / "vendor"
# file in node_modules -> path under static/vendor (a trailing "/" copies a folder)
VENDOR_FILES: dict[str, str] = {
    "cytoscape/dist/cytoscape.min.js": "cytoscape/cytoscape.min.js",
    "cytoscape/LICENSE": "cytoscape/LICENSE",
    # fcose layout: the UMD builds find each other as globals, loaded in this order
    "layout-base/layout-base.js": "cytoscape/layout-base.js",
    "cose-base/cose-base.js": "cytoscape/cose-base.js",
    "cytoscape-fcose/cytoscape-fcose.js": "cytoscape/cytoscape-fcose.js",
    "cytoscape-fcose/LICENSE": "cytoscape/LICENSE.fcose",
    "leaflet/dist/leaflet.js": "leaflet/leaflet.js",
    "leaflet/dist/leaflet.css": "leaflet/leaflet.css",
    "leaflet/dist/images/": "leaflet/images/",
    "leaflet/LICENSE": "leaflet/LICENSE",
    "chart.js/dist/chart.umd.min.js": "chart.js/chart.umd.min.js",
    "chart.js/LICENSE.md": "chart.js/LICENSE.md",
}
VENDOR_STAMP = ".package-lock.sha256"


def _lock_digest() -> str:
    import hashlib

    return hashlib.sha256((REPO / "package-lock.json").read_bytes()).hexdigest()


def assets_installed() -> bool:
    """static/vendor/ holds every file, copied from the current package-lock.json."""
    stamp = VENDOR_DIR / VENDOR_STAMP
    return (stamp.exists() and stamp.read_text().strip() == _lock_digest()
            and all((VENDOR_DIR / dest).exists() for dest in VENDOR_FILES.values()))


def install_assets() -> Path:
    """npm ci (offline first, from <cache>/npm) and copy the built files into
    taskforce/static/vendor/; skipped while the copy matches package-lock.json."""
    if assets_installed():
        return VENDOR_DIR
    with _install_lock():
        if assets_installed():
            return VENDOR_DIR
        if shutil.which("npm") is None:
            ensure_apt(["nodejs", "npm"])
        npm = shutil.which("npm")
        if npm is None:
            raise ServiceError("npm is needed for the pages' JavaScript libraries; not found")
        npm_cache = cache_dir() / "npm"
        npm_cache.mkdir(parents=True, exist_ok=True)
        log("installing the pages' JavaScript libraries (npm ci)")
        _run([npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts",
              f"--cache={npm_cache}"], cwd=REPO, quiet=True)
        _copy_vendor_files(REPO / "node_modules")
    return VENDOR_DIR


def _copy_vendor_files(modules: Path) -> None:
    # Copy into a scratch folder, then swap: the app never serves a half copy.
    partial = VENDOR_DIR.with_name("vendor.partial")
    shutil.rmtree(partial, ignore_errors=True)
    for src, dest in VENDOR_FILES.items():
        source, target = modules / src, partial / dest
        if not source.exists():
            raise ServiceError(f"npm ci finished but {source} is missing")
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.endswith("/"):
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
    (partial / VENDOR_STAMP).write_text(_lock_digest() + "\n")
    old = VENDOR_DIR.with_name("vendor.old")
    shutil.rmtree(old, ignore_errors=True)
    if VENDOR_DIR.exists():
        VENDOR_DIR.rename(old)
    partial.rename(VENDOR_DIR)
    shutil.rmtree(old, ignore_errors=True)


INSTALLERS: dict[str, Callable[[], object]] = {
    "neo4j": install_neo4j,
    "s3": install_versitygw,
    "redis": lambda: ensure_apt(APT_PACKAGES["redis"]),
    "postgres": lambda: ensure_apt(APT_PACKAGES["postgres"]),
    "smtp": install_aiosmtpd,
    # recommends bring the fonts pages are drawn with
    "chromium": lambda: ensure_apt(APT_PACKAGES["chromium"], recommends=True),
    "assets": install_assets,
}


def install(names: Sequence[str] | None = None) -> dict[str, float]:
    """Install what the named services need (default: all); seconds taken by each."""
    timings: dict[str, float] = {}
    for name in names or SERVICES:
        if name not in INSTALLERS:
            raise ServiceError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
        t0 = time.monotonic()
        INSTALLERS[name]()
        timings[name] = time.monotonic() - t0
        log(f"{name}: ready to start ({timings[name]:.1f}s)")
    return timings


# --------------------------------------------------------------------------- #
# Neo4j
# --------------------------------------------------------------------------- #

def _neo4j_conf(workdir: Path, *, bolt_port: int, http_port: int, heap: str, pagecache: str,
                throwaway: bool) -> str:
    d = {k: workdir / k for k in ("data", "logs", "run", "import", "plugins", "licenses")}
    for p in d.values():
        p.mkdir(parents=True, exist_ok=True)
    lines = [
        "# written by scripts/services.py at each start; edits are lost",
        f"server.default_listen_address={LOOPBACK}",
        f"server.default_advertised_address={LOOPBACK}",
        f"server.bolt.listen_address={LOOPBACK}:{bolt_port}",
        f"server.http.listen_address={LOOPBACK}:{http_port}",
        # advertised = what the routing table (neo4j:// URIs) and discovery hand out
        f"server.bolt.advertised_address={LOOPBACK}:{bolt_port}",
        f"server.http.advertised_address={LOOPBACK}:{http_port}",
        "server.https.enabled=false",
        *(f"server.directories.{k}={p}" for k, p in d.items()),
        "dbms.security.auth_enabled=true",
        f"server.memory.heap.initial_size={heap}",
        f"server.memory.heap.max_size={heap}",
        f"server.memory.pagecache.size={pagecache}",
        # no usage data sent anywhere
        "dbms.usage_report.enabled=false",
        # what the distribution's neo4j.conf sets for the JVM: without the opens
        # the page cache falls back to a slower path (and says so in debug.log)
        "server.jvm.additional=-XX:+UseG1GC",
        "server.jvm.additional=-XX:-OmitStackTraceInFastThrow",
        "server.jvm.additional=-XX:+ExitOnOutOfMemoryError",
        "server.jvm.additional=-Djdk.nio.maxCachedBufferSize=1024",
        "server.jvm.additional=-Dio.netty.tryReflectionSetAccessible=true",
        "server.jvm.additional=-Dlog4j2.disable.jmx=true",
        "server.jvm.additional=--add-opens=java.base/java.nio=ALL-UNNAMED",
        "server.jvm.additional=--add-opens=java.base/java.io=ALL-UNNAMED",
        "server.jvm.additional=--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    ]
    lines += [
        # Bolt's Netty event loops otherwise idle 5s each when the server stops,
        # after the databases are already checkpointed and closed.
        "internal.dbms.bolt.netty_server_shutdown_quiet_period=0",
        "internal.dbms.bolt.netty_server_shutdown_timeout=2s",
    ]
    if throwaway:
        lines += [
            "db.logs.query.enabled=OFF",
            # C1 only: a test server lives seconds to minutes, and skipping the
            # optimising compiler cuts the CPU its start costs by about 40%.
            "server.jvm.additional=-XX:TieredStopAtLevel=1",
        ]
    return "\n".join(lines) + "\n"


def _bolt_answers(port: int) -> bool:
    """Bolt handshake: magic, then four proposed versions; a non-zero reply
    means the server speaks Bolt on that port."""
    with socket.create_connection((LOOPBACK, port), timeout=2) as s:
        s.sendall(b"\x60\x60\xb0\x17"
                  b"\x00\x08\x08\x05"  # 5.8 down to 5.0
                  b"\x00\x00\x04\x04"  # 4.4
                  + b"\x00" * 8)
        reply = _recv_exact(s, 4)
    return reply != b"\x00\x00\x00\x00"


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def _http_answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return 200 <= r.status < 300


def _neo4j_login(uri: str, http_port: int, user: str, password: str) -> bool:
    """Log in and run a query: over Bolt with the Python driver when it is
    installed, else over HTTP (the CLI may run before the venv exists)."""
    try:
        import neo4j
        from neo4j.exceptions import AuthError
    except ImportError:
        return _neo4j_login_http(http_port, user, password)
    try:
        with neo4j.GraphDatabase.driver(uri, auth=(user, password)) as driver:
            driver.execute_query("RETURN 1")
    except AuthError as e:
        raise _Fatal(f"the server refuses the password: {e}") from e
    return True


def _neo4j_login_http(http_port: int, user: str, password: str) -> bool:
    body = json.dumps({"statements": [{"statement": "RETURN 1"}]}).encode()
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(
        f"http://{LOOPBACK}:{http_port}/db/neo4j/tx/commit", data=body, method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json",
                 "Authorization": f"Basic {basic}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            errors = json.load(r).get("errors") or []
    except urllib.error.HTTPError as e:
        if e.code == 401:
            raise _Fatal("the server refuses the password (HTTP 401)") from e
        raise
    if errors:  # e.g. the database is still starting: poll again
        raise ConnectionError(f"query failed: {errors}")
    return True


def neo4j_password() -> str:
    """A random password that neo4j-admin's command line cannot mistake for an
    option: token_urlsafe may begin with '-' (1 time in 64), so prefix letters."""
    return "tf" + secrets.token_urlsafe(18)


def start_neo4j(workdir: Path | str, *, password: str | None = None, bolt_port: int | None = None,
                http_port: int | None = None, heap: str = "512m", pagecache: str = "256m",
                throwaway: bool = True, detach: bool = False, timeout: float = 120) -> Neo4jHandle:
    """Start Neo4j with its data in workdir. The password is set before the first
    start only (set-initial-password); later starts of the same workdir must pass
    the same one. detach=True leaves it running after this process exits."""
    t0 = time.monotonic()
    workdir = Path(workdir).resolve()
    home = install_neo4j()
    java = ensure_java()
    password = password or neo4j_password()
    bolt_port = bolt_port or free_port()
    http_port = http_port or free_port()
    conf_dir = workdir / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "neo4j.conf").write_text(_neo4j_conf(
        workdir, bolt_port=bolt_port, http_port=http_port, heap=heap, pagecache=pagecache,
        throwaway=throwaway))
    env = dict(os.environ, NEO4J_HOME=str(home), NEO4J_CONF=str(conf_dir),
               JAVA_HOME=str(Path(java).resolve().parent.parent))
    env.pop("NEO4J_PASSWORD", None)
    classpath = f"{home / 'lib'}/*"
    log_path = workdir / "logs" / "console.log"
    # The launcher JVM only forks the server JVM and waits: keep it small and quick.
    launcher = [java, "-Xms16m", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-cp", classpath]
    if not (workdir / "data" / "databases" / "system").exists():
        _run([*launcher, "org.neo4j.server.startup.Neo4jAdminCommand", "dbms",
              "set-initial-password", password], env=env, quiet=True, secret=password)
    proc = _spawn([*launcher, "org.neo4j.server.startup.Neo4jCommand", "console"],
                  log_path=log_path, env=env, cwd=workdir)
    uri = f"bolt://{LOOPBACK}:{bolt_port}"
    handle = Neo4jHandle(name="neo4j", workdir=workdir, log_path=log_path, process=proc,
                         stop_timeout=5 if throwaway else 60, uri=uri, user="neo4j",
                         password=password, bolt_port=bolt_port, http_port=http_port, home=home)
    _await_ready(handle, lambda: _bolt_answers(bolt_port)
                 and _http_answers(f"http://{LOOPBACK}:{http_port}/")
                 and _neo4j_login(uri, http_port, "neo4j", password), timeout, "Bolt and HTTP")
    _ready(handle, t0)
    if detach:  # no longer ours to stop at exit
        _LIVE.remove(handle)
    return handle


# --------------------------------------------------------------------------- #
# S3 (versitygw)
# --------------------------------------------------------------------------- #

def _xattrs_work(path: Path) -> bool:
    """versitygw's posix backend keeps object metadata (retention, legal hold,
    version ids) in user.* extended attributes."""
    try:
        os.setxattr(path, "user.taskforce-probe", b"1")
        os.removexattr(path, "user.taskforce-probe")
        return True
    except OSError:
        return False


def _http_any_answer(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:  # 403 to an anonymous request: it is up
        return True


def _verify_object_lock(client: Any, bucket: str) -> None:
    """Prove the server itself enforces the lock: a version under legal hold
    cannot be deleted; then lift the hold and remove the probe."""
    from minio.error import S3Error

    status = client.get_bucket_versioning(bucket).status
    if status != "Enabled":
        raise ServiceError(f"bucket {bucket} has versioning {status!r}, object lock needs Enabled")
    name = f".taskforce-lock-probe-{secrets.token_hex(4)}"
    put = client.put_object(bucket, name, io.BytesIO(b"probe"), 5, legal_hold=True)
    try:
        client.remove_object(bucket, name, version_id=put.version_id)
    except S3Error as e:
        if e.code != "AccessDenied":
            raise
    else:
        raise ServiceError(f"bucket {bucket}: a version under legal hold was deleted; "
                           "object lock is not enforced")
    client.disable_object_legal_hold(bucket, name, version_id=put.version_id)
    client.remove_object(bucket, name, version_id=put.version_id)


def start_s3(workdir: Path | str, *, bucket: str = "evidence", access_key: str | None = None,
             secret_key: str | None = None, port: int | None = None,
             timeout: float = 30) -> S3Handle:
    """Start versitygw (posix backend, versioning on) and create `bucket` with
    object lock. Needs the minio package for the bucket."""
    t0 = time.monotonic()
    workdir = Path(workdir).resolve()
    binary = install_versitygw()
    access_key = access_key or "tf" + secrets.token_hex(8)
    secret_key = secret_key or secrets.token_urlsafe(24)
    port = port or free_port()
    data, versions = workdir / "data", workdir / "versions"
    data.mkdir(parents=True, exist_ok=True)
    versions.mkdir(parents=True, exist_ok=True)
    backend = ["posix", "--versioning-dir", str(versions)]
    if not _xattrs_work(data):  # e.g. tmpfs without user xattrs: keep metadata in files
        (workdir / "meta").mkdir(exist_ok=True)
        backend += ["--sidecar", str(workdir / "meta")]
    # Keys go in the environment, not argv, so `ps` does not show them.
    env = dict(os.environ, ROOT_ACCESS_KEY_ID=access_key, ROOT_SECRET_ACCESS_KEY=secret_key)
    log_path = workdir / "versitygw.log"
    proc = _spawn([str(binary), "--port", f"{LOOPBACK}:{port}", "--quiet", *backend, str(data)],
                  log_path=log_path, env=env, cwd=workdir)
    handle = S3Handle(name="s3", workdir=workdir, log_path=log_path, process=proc,
                      stop_timeout=5, endpoint=f"{LOOPBACK}:{port}", access_key=access_key,
                      secret_key=secret_key, bucket=bucket)
    _await_ready(handle, lambda: _http_any_answer(f"http://{LOOPBACK}:{port}/"), timeout, "HTTP")
    try:
        client = handle.client()
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket, object_lock=True)
        _verify_object_lock(client, bucket)
    except BaseException as e:
        handle.stop()
        raise ServiceError(f"s3: bucket {bucket} with object lock: {e}\n{handle.log_tail()}") from e
    _ready(handle, t0)
    return handle


# --------------------------------------------------------------------------- #
# Redis
# --------------------------------------------------------------------------- #

def _redis_pong(port: int) -> bool:
    with socket.create_connection((LOOPBACK, port), timeout=2) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")  # -LOADING while it reads a dump


def start_redis(workdir: Path | str, *, port: int | None = None,
                timeout: float = 30) -> RedisHandle:
    """redis-server on loopback, nothing persisted."""
    t0 = time.monotonic()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    INSTALLERS["redis"]()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = port or free_port()
    log_path = workdir / "redis.log"
    proc = _spawn([binary, "--port", str(port), "--bind", LOOPBACK, "--protected-mode", "yes",
                   "--save", "", "--appendonly", "no", "--dir", str(workdir),
                   "--daemonize", "no", "--logfile", ""],  # "" = log to stdout, i.e. log_path
                  log_path=log_path, cwd=workdir)
    handle = RedisHandle(name="redis", workdir=workdir, log_path=log_path, process=proc,
                         stop_timeout=5, url=f"redis://{LOOPBACK}:{port}/0", port=port)
    _await_ready(handle, lambda: _redis_pong(port), timeout, "PING")
    _ready(handle, t0)
    return handle


# --------------------------------------------------------------------------- #
# PostgreSQL
# --------------------------------------------------------------------------- #

def start_postgres(workdir: Path | str, *, user: str = "taskforce", dbname: str = "taskforce",
                   port: int | None = None, timeout: float = 60) -> PostgresHandle:
    """initdb + postgres on loopback (trust auth: a throw-away test cluster).

    initdb and postgres refuse to run as root; as root they run as the `postgres`
    OS user, in a data folder under the system temp dir that this user can reach
    (pytest's tmp folders are root-only, 0700) and that stop() removes.
    """
    t0 = time.monotonic()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    INSTALLERS["postgres"]()
    bindir = _postgres_bindir()
    port = port or free_port()
    cleanups: list[Callable[[], None]] = []
    run_as: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            run_as = pwd.getpwnam("postgres")
        except KeyError as e:
            raise ServiceError("running as root, and there is no `postgres` OS user to run "
                               "PostgreSQL as (it comes with the postgresql package)") from e
        base = Path(tempfile.mkdtemp(prefix="taskforce-pg-"))
        os.chown(base, run_as.pw_uid, run_as.pw_gid)
        cleanups.append(lambda: shutil.rmtree(base, ignore_errors=True))
        with contextlib.suppress(OSError):
            (workdir / "cluster").symlink_to(base)  # so a person finds it from the workdir
    else:
        base = workdir / "cluster"
        base.mkdir(exist_ok=True)
    data = base / "data"
    log_path = workdir / "postgres.log"
    handle = PostgresHandle(
        name="postgres", workdir=workdir, log_path=log_path,
        stop_signal=signal.SIGINT,  # PostgreSQL's "fast" shutdown
        stop_timeout=10, cleanups=cleanups, host=LOOPBACK, port=port, user=user, dbname=dbname,
        url=f"postgresql+psycopg://{user}@{LOOPBACK}:{port}/{dbname}")
    try:
        initdb = _spawn([str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust",
                         "-E", "UTF8", "--no-locale", "--no-sync"],
                        log_path=log_path, cwd=base, user=run_as)
        if initdb.wait(timeout) != 0:
            raise ServiceError(f"initdb failed\n{tail(log_path)}")
        # fsync and friends off: a test cluster is thrown away, durability buys nothing.
        # Sized for bulk loads (bench/bench_target_check.py COPYs 10M rows): buffers
        # that hold a 10M-row table's random-key index (allocated as touched, so a small
        # test run costs nothing), and WAL room so a load is not checkpointed every
        # ~1M rows (~1 kB of WAL per row with its index entries; the default
        # max_wal_size is 1GB).
        handle.process = _spawn(
            [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(base),
             "-c", f"listen_addresses={LOOPBACK}", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "shared_buffers=1GB", "-c", "wal_buffers=64MB",
             "-c", "max_wal_size=8GB", "-c", "checkpoint_timeout=30min"],
            log_path=log_path, cwd=base, user=run_as)
    except BaseException:
        handle.stop()
        raise
    isready = [str(bindir / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(port), "-U", user,
               "-d", "postgres", "-t", "2"]
    _await_ready(handle, lambda: subprocess.run(isready, check=False).returncode == 0,
                 timeout, "pg_isready")
    try:
        _run([str(bindir / "createdb"), "-h", LOOPBACK, "-p", str(port), "-U", user, dbname],
             quiet=True)
    except BaseException:
        handle.stop()
        raise
    _ready(handle, t0)
    return handle


# --------------------------------------------------------------------------- #
# SMTP (aiosmtpd)
# --------------------------------------------------------------------------- #

def _smtp_noop(port: int) -> bool:
    with smtplib.SMTP(LOOPBACK, port, timeout=2) as s:
        return s.noop()[0] == 250


def start_smtp(workdir: Path | str, *, python: str = sys.executable, port: int | None = None,
               timeout: float = 30) -> SmtpHandle:
    """aiosmtpd on loopback; every message lands in workdir/maildir (read_mail)."""
    t0 = time.monotonic()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    install_aiosmtpd(python)
    port = port or free_port()
    maildir = workdir / "maildir"
    mailbox.Maildir(maildir, create=True)  # exists before the first read_mail
    log_path = workdir / "smtp.log"
    # -n: do not setuid to `nobody` (which it tries when run as root)
    proc = _spawn([python, "-m", "aiosmtpd", "-n", "-l", f"{LOOPBACK}:{port}",
                   "-c", "aiosmtpd.handlers.Mailbox", str(maildir)],
                  log_path=log_path, cwd=workdir)
    handle = SmtpHandle(name="smtp", workdir=workdir, log_path=log_path, process=proc,
                        stop_timeout=5, host=LOOPBACK, port=port, maildir=maildir)
    _await_ready(handle, lambda: _smtp_noop(port), timeout, "SMTP NOOP")
    _ready(handle, t0)
    return handle


def read_mail(handle: SmtpHandle, *, count: int = 1, timeout: float = 10.0,
              match: Callable[[email.message.EmailMessage], bool] | None = None,
              remove: bool = True) -> list[email.message.EmailMessage]:
    """Wait until `count` messages (those for which match() is true, if given)
    are in the mailbox; return them oldest first, parsed with the modern email
    policy. remove=True takes them out, so the next call sees only newer mail."""
    box = mailbox.Maildir(handle.maildir, factory=None, create=False)
    parser = BytesParser(policy=email.policy.default)
    deadline = time.monotonic() + timeout
    while True:
        found: list[tuple[str, email.message.EmailMessage]] = []
        for key in sorted(box.keys()):  # keys start with the delivery time
            msg = parser.parsebytes(box.get_bytes(key))
            assert isinstance(msg, email.message.EmailMessage)
            if match is None or match(msg):
                found.append((key, msg))
        if len(found) >= count:
            if remove:
                for key, _ in found:
                    with contextlib.suppress(KeyError):
                        box.remove(key)
            return [m for _, m in found]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(found)} of {count} mail(s) arrived in {handle.maildir} "
                               f"within {timeout}s")
        time.sleep(0.05)


# --------------------------------------------------------------------------- #
# Celery worker (the app's own, against a broker started above)
# --------------------------------------------------------------------------- #

def start_celery_worker(workdir: Path | str, *, broker_url: str,
                        environ: dict[str, str] | None = None,
                        python: str = sys.executable, app: str = "taskforce.celery_app:celery",
                        timeout: float = 60) -> CeleryWorkerHandle:
    """A real worker process: `python -m celery -A app worker --pool=solo`.

    environ are the app's settings (TASKFORCE_ENV, SECRET_KEY, DATABASE_URL, ...);
    CELERY_BROKER_URL is set from broker_url. Ready when its log says so.
    """
    t0 = time.monotonic()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    settings = dict(environ or {})
    settings["CELERY_BROKER_URL"] = broker_url
    env = dict(os.environ, **settings)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    log_path = workdir / "celery-worker.log"
    # gossip/mingle/heartbeat talk to other workers: there are none, and mingle
    # alone waits a second or more for their replies.
    proc = _spawn([python, "-m", "celery", "-A", app, "worker", "--pool=solo", "--concurrency=1",
                   "-l", "info", "-n", f"taskforce-test-{os.getpid()}@%h",
                   "--without-gossip", "--without-mingle", "--without-heartbeat"],
                  log_path=log_path, env=env, cwd=REPO)
    handle = CeleryWorkerHandle(name="celery-worker", workdir=workdir, log_path=log_path,
                                process=proc, stop_timeout=10, broker_url=broker_url,
                                environ=settings)

    def ready() -> bool:
        text = log_path.read_text("utf-8", "replace")
        if "consumer: Cannot connect" in text:
            raise _Fatal("the worker cannot reach the broker")
        return " ready." in text

    _await_ready(handle, ready, timeout, "the worker")
    _ready(handle, t0)
    return handle


STARTERS: dict[str, Callable[[Path], Handle]] = {
    "neo4j": start_neo4j,
    "s3": start_s3,
    "redis": start_redis,
    "postgres": start_postgres,
    "smtp": start_smtp,
}


# --------------------------------------------------------------------------- #
# `make run`: one local Neo4j that outlives this process
# --------------------------------------------------------------------------- #

def instance_dir() -> Path:
    """The app's instance folder: TASKFORCE_INSTANCE, else Flask's default <repo>/instance."""
    return Path(os.environ.get("TASKFORCE_INSTANCE") or REPO / "instance").resolve()


def _dev_paths() -> dict[str, Path]:
    inst = instance_dir()
    return {"instance": inst, "workdir": inst / "neo4j", "password": inst / "neo4j_password",
            "pid": inst / "neo4j.pid", "info": inst / "neo4j.json"}


def _alive(pid: int) -> bool:
    """True if pid runs and is no zombie (an orphan may wait unreaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def dev_status() -> dict[str, Any] | None:
    """The running dev Neo4j as recorded in instance/neo4j.json, or None."""
    p = _dev_paths()
    try:
        info = json.loads(p["info"].read_text())
        pid = int(p["pid"].read_text().strip())
    except (OSError, ValueError):
        return None
    if not _alive(pid):
        return None
    try:
        info["answers"] = _bolt_answers(int(info["bolt_port"]))
    except OSError:
        info["answers"] = False
    info["pid"] = pid
    return info


def start_dev(timeout: float = 180) -> dict[str, Any]:
    """Start (or find running) the local Neo4j for `make run`: data kept in
    instance/neo4j, password generated once into instance/neo4j_password (the
    app's config reads it), ports 7687/7474 when free. Returns its info."""
    p = _dev_paths()
    running = dev_status()
    if running and running["answers"]:
        log(f"neo4j already running (pid {running['pid']}) at {running['uri']}")
        return running
    if running:  # alive but not answering (still starting or stuck): start over
        stop_dev()
    p["instance"].mkdir(parents=True, exist_ok=True)
    if not p["password"].exists():
        p["password"].write_text(neo4j_password() + "\n")
        p["password"].chmod(0o600)
    password = p["password"].read_text().strip()
    bolt = 7687 if port_is_free(7687) else free_port()
    http = 7474 if port_is_free(7474) else free_port()
    try:
        handle = start_neo4j(p["workdir"], password=password, bolt_port=bolt, http_port=http,
                             throwaway=False, detach=True, timeout=timeout)
    except ServiceError as e:
        if "refuses the password" in str(e):
            raise ServiceError(f"{p['password']} does not match the password the data in "
                               f"{p['workdir']} was created with: remove that folder (the local "
                               f"graph is lost) or put the old password back.\n{e}") from e
        raise
    assert handle.pid is not None
    p["pid"].write_text(f"{handle.pid}\n")
    info = {"uri": handle.uri, "bolt_port": bolt, "http_port": http, "user": handle.user,
            "workdir": str(p["workdir"]), "log": str(handle.log_path)}
    p["info"].write_text(json.dumps(info, indent=2) + "\n")
    log(f"neo4j started in {handle.started_in:.1f}s (pid {handle.pid}) at {handle.uri}, "
        f"browser port {http}; password in {p['password']}")
    if bolt != 7687:
        log(f"port 7687 was taken: run the app with NEO4J_URI={handle.uri}")
    return dict(info, pid=handle.pid, answers=True)


def stop_dev(timeout: float = 60) -> bool:
    """Stop the dev Neo4j cleanly (its data is kept). False if none was running."""
    p = _dev_paths()
    try:
        pid = int(p["pid"].read_text().strip())
    except (OSError, ValueError):
        return False
    stopped = False
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)  # started with its own session: pgid == pid
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        stopped = True
        log(f"neo4j (pid {pid}) stopped")
    for key in ("pid", "info"):
        p[key].unlink(missing_ok=True)
    return stopped


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #

def _installed(name: str) -> bool:
    if name == "neo4j":
        return (neo4j_home() / "lib" / ".complete").exists()
    if name == "s3":
        return versitygw_bin().exists()
    if name == "smtp":
        return importlib.util.find_spec("aiosmtpd") is not None
    if name == "assets":
        return assets_installed()
    return all(_dpkg_installed(pkg) for pkg in APT_PACKAGES[name])


def _status() -> None:
    for name in SERVICES:
        where = f" (for {sys.executable})" if name == "smtp" else ""
        print(f"{name:9} {'installed' if _installed(name) else 'not installed'}{where}")
    info = dev_status()
    if info is None:
        print("dev neo4j: not running")
    else:
        state = "answering" if info["answers"] else "NOT answering"
        print(f"dev neo4j: pid {info['pid']}, {info['uri']}, "
              f"http port {info['http_port']}, {state}")


def _foreground(names: Sequence[str]) -> None:
    """Start the named services in a temp folder, print their settings, and keep
    them until Ctrl-C (or SIGTERM)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so atexit stops them
    base = Path(tempfile.mkdtemp(prefix="taskforce-services-"))
    env: dict[str, str] = {}
    try:
        for name in names:
            handle = STARTERS[name](base / name)
            log(f"{name} ready in {handle.started_in:.1f}s (log {handle.log_path})")
            env.update(handle.env())
        for key, value in env.items():
            print(f"export {key}={value}")
        log("running; Ctrl-C stops them")
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        stop_all()
        shutil.rmtree(base, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="services", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("install", "start", "stop", "status"))
    parser.add_argument("names", nargs="*", help=f"services (default: all): {', '.join(SERVICES)}")
    parser.add_argument("--dev", action="store_true",
                        help="start/stop the local Neo4j of `make run` (kept in instance/neo4j)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in SERVICES]
    if unknown:
        parser.error(f"unknown service(s) {unknown}; known: {', '.join(SERVICES)}")
    try:
        if args.command == "install":
            install(args.names or SERVICES)
        elif args.command == "status":
            _status()
        elif args.command == "stop":
            if not stop_dev():
                log("no dev neo4j running (foreground `start` stops with Ctrl-C)")
        elif args.dev:
            start_dev()
        else:
            names = [n for n in (args.names or STARTABLE) if n in STARTABLE]
            _foreground(names)
    except ServiceError as e:
        print(f"[services] error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
