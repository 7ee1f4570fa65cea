"""Settings, read only from environment variables.

Every variable is listed in SETTINGS with its default and meaning; the README
table is generated from it (`flask settings`), so the two cannot drift.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Setting:
    env: str
    key: str
    default: Any
    doc: str
    cast: Callable[[str], Any] = str


def _bool(v: str) -> bool:
    return v.strip().lower() in {"1", "true", "yes", "on"}


SETTINGS: list[Setting] = [
    Setting("TASKFORCE_ENV", "ENV_NAME", "development",
            "development, test or production; production refuses to start without SECRET_KEY"),
    Setting("SECRET_KEY", "SECRET_KEY", None,
            "signs sessions and CSRF tokens; development keeps a random one in the instance folder"),
    Setting("DATABASE_URL", "SQLALCHEMY_DATABASE_URI", None,
            "SQLAlchemy URL of the system of record; default SQLite in the instance folder"),
    Setting("NEO4J_URI", "NEO4J_URI", "bolt://127.0.0.1:7687", "Bolt URI of the graph engine"),
    Setting("NEO4J_USER", "NEO4J_USER", "neo4j", "Neo4j user"),
    Setting("NEO4J_PASSWORD", "NEO4J_PASSWORD", None,
            "Neo4j password; `make run` writes the local one to the instance folder"),
    Setting("S3_ENDPOINT", "S3_ENDPOINT", "",
            "host:port of the S3 evidence store; empty means the local evidence folder"),
    Setting("S3_ACCESS_KEY", "S3_ACCESS_KEY", "", "S3 access key"),
    Setting("S3_SECRET_KEY", "S3_SECRET_KEY", "", "S3 secret key"),
    Setting("S3_BUCKET", "S3_BUCKET", "evidence", "bucket (created with object lock)"),
    Setting("S3_SECURE", "S3_SECURE", False, "use TLS to reach S3", _bool),
    Setting("EVIDENCE_DIR", "EVIDENCE_DIR", None,
            "local evidence folder when S3_ENDPOINT is empty; default instance/evidence"),
    Setting("EVIDENCE_MAX_BYTES", "EVIDENCE_MAX_BYTES", 64 * 1024**3,
            "largest evidence upload in bytes (other requests keep a 16 MiB limit)", int),
    Setting("EVIDENCE_RETENTION_DAYS", "EVIDENCE_RETENTION_DAYS", 3650,
            "object-lock retention set on each stored evidence object (extended, never shortened)",
            int),
    Setting("EVIDENCE_RETENTION_MODE", "EVIDENCE_RETENTION_MODE", "GOVERNANCE",
            "GOVERNANCE (lifted only with the bypass permission) or COMPLIANCE (nobody can)"),
    Setting("EVIDENCE_ORPHAN_GRACE_HOURS", "EVIDENCE_ORPHAN_GRACE_HOURS", 24,
            "hours an unreferenced upload may wait before the integrity sweep removes it "
            "(an upload still in progress is younger)", float),
    Setting("EVIDENCE_TEXT_TIME_LIMIT", "EVIDENCE_TEXT_TIME_LIMIT", 60,
            "seconds a PDF's text extraction may run before it is stopped and the item marked "
            "'text not extracted'", float),
    Setting("EVIDENCE_TEXT_MEMORY_MB", "EVIDENCE_TEXT_MEMORY_MB", 768,
            "memory (address space) a PDF's text extraction may use before it is stopped", int),
    Setting("PACKAGE_SIGNING_KEY_FILE", "PACKAGE_SIGNING_KEY_FILE", None,
            "PEM file of the task force's Ed25519 key that signs prosecutor package manifests; "
            "packages are refused in production without it; development and test create "
            "instance/package_signing_key.pem"),
    Setting("PACKAGE_BATES_PREFIX", "PACKAGE_BATES_PREFIX", "TF",
            "prefix of the Bates numbers stamped on every page of a prosecutor package"),
    Setting("PACKAGE_ACCESS_DAYS", "PACKAGE_ACCESS_DAYS", 30,
            "default days a prosecutor's read-only access to a package lasts", int),
    Setting("DECONFLICTION_BLIND_INDEX", "DECONFLICTION_BLIND_INDEX", None,
            "keep deconfliction identifiers only as HMAC-SHA256 tags; default on in production, "
            "off otherwise", _bool),
    Setting("DECONFLICTION_KEY", "DECONFLICTION_KEY", None,
            "blind index key (32+ random characters); required in production while the blind "
            "index is on; development and test derive one from SECRET_KEY with HKDF-SHA256"),
    Setting("DECONFLICTION_TTL_DAYS", "DECONFLICTION_TTL_DAYS", 730,
            "days a target registration lives (renewable)", int),
    Setting("VICTIMS_ALERT_QUEUE", "VICTIMS_ALERT_QUEUE", "",
            "Celery queue of survivor alerts; in production give them a worker of their own "
            "(`-Q alerts`) so their 5-second promise never waits behind an import"),
    Setting("TASKFORCE_BASE_URL", "BASE_URL", "http://localhost:5000",
            "the app's address, for links in emails"),
    Setting("CELERY_BROKER_URL", "CELERY_BROKER_URL", "",
            "Redis URL of the Celery broker; empty runs jobs in-process"),
    Setting("CELERY_RESULT_BACKEND", "CELERY_RESULT_BACKEND", "",
            "Celery result backend; defaults to the broker URL"),
    Setting("SMTP_HOST", "SMTP_HOST", "", "SMTP relay host; empty logs mail instead of sending it"),
    Setting("SMTP_PORT", "SMTP_PORT", 25, "SMTP relay port", int),
    Setting("MAIL_FROM", "MAIL_FROM", "taskforce@localhost", "sender of notifications"),
    Setting("RATELIMIT_STORAGE_URI", "RATELIMIT_STORAGE_URI", "memory://",
            "Flask-Limiter storage (use the Redis URL with several workers)"),
    Setting("LOGIN_RATE_LIMIT", "LOGIN_RATE_LIMIT", "10 per minute",
            "login attempts allowed per IP and per account name"),
    Setting("SESSION_IDLE_MINUTES", "SESSION_IDLE_MINUTES", 30,
            "a session ends after this many idle minutes", int),
    Setting("SESSION_MAX_HOURS", "SESSION_MAX_HOURS", 12,
            "sign in again after this many hours, active or not", int),
    Setting("LOCKOUT_THRESHOLD", "LOCKOUT_THRESHOLD", 5,
            "failed logins before an account locks", int),
    Setting("LOCKOUT_MINUTES", "LOCKOUT_MINUTES", 30, "how long a lockout lasts", int),
    Setting("TASKFORCE_TRUSTED_PROXIES", "TRUSTED_PROXIES", 0,
            "reverse proxies in front of the app whose X-Forwarded-For is trusted; 0 ignores it",
            int),
    Setting("TASKFORCE_TLS", "TLS", False,
            "served behind TLS: Secure cookies and HSTS", _bool),
    Setting("TASKFORCE_DEMO_SEED", "DEMO_SEED", True,
            "`make run` seeds the demo task force on first start", _bool),
]


def load(environ: Mapping[str, str] | None = None, *, instance_path: str | Path) -> dict[str, Any]:
    """Build the Flask config from the environment (and nothing else)."""
    environ = os.environ if environ is None else environ
    instance = Path(instance_path)
    cfg: dict[str, Any] = {}
    for s in SETTINGS:
        raw = environ.get(s.env)
        cfg[s.key] = s.cast(raw) if raw not in (None, "") else s.default

    env_name = cfg["ENV_NAME"]
    if env_name not in {"development", "test", "production"}:
        raise RuntimeError(f"TASKFORCE_ENV must be development, test or production, not {env_name!r}")
    if not cfg["SECRET_KEY"]:
        if env_name == "production":
            raise RuntimeError("SECRET_KEY must be set in production")
        cfg["SECRET_KEY"] = _instance_secret(instance / "secret_key")
    if not cfg["SQLALCHEMY_DATABASE_URI"]:
        cfg["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{instance / 'taskforce.db'}"
    if not cfg["EVIDENCE_DIR"]:
        cfg["EVIDENCE_DIR"] = str(instance / "evidence")
    if not cfg["NEO4J_PASSWORD"]:
        pw_file = instance / "neo4j_password"
        cfg["NEO4J_PASSWORD"] = pw_file.read_text().strip() if pw_file.exists() else ""
    if cfg["DECONFLICTION_BLIND_INDEX"] is None:
        cfg["DECONFLICTION_BLIND_INDEX"] = env_name == "production"
    if env_name == "production" and cfg["DECONFLICTION_BLIND_INDEX"] \
            and not cfg["DECONFLICTION_KEY"]:
        raise RuntimeError("DECONFLICTION_KEY must be set in production while the blind index is on")
    if not cfg["PACKAGE_SIGNING_KEY_FILE"] and env_name != "production":
        # production must name its key (packages refuse to build without one)
        cfg["PACKAGE_SIGNING_KEY_FILE"] = str(instance / "package_signing_key.pem")
    if cfg["EVIDENCE_RETENTION_MODE"] not in {"GOVERNANCE", "COMPLIANCE"}:
        raise RuntimeError("EVIDENCE_RETENTION_MODE must be GOVERNANCE or COMPLIANCE")
    if not cfg["CELERY_RESULT_BACKEND"]:
        cfg["CELERY_RESULT_BACKEND"] = cfg["CELERY_BROKER_URL"]

    cfg.update(
        TESTING=env_name == "test",
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=cfg["TLS"],
        REMEMBER_COOKIE_SECURE=cfg["TLS"],
        PREFERRED_URL_SCHEME="https" if cfg["TLS"] else "http",
        # CSRF is enforced by our own hook so Bearer-token API calls can skip it.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        RATELIMIT_HEADERS_ENABLED=True,
    )
    return cfg


def _instance_secret(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = "(none)" if s.default in (None, "") else f"`{s.default}`"
        rows.append(f"| `{s.env}` | {default} | {s.doc} |")
    return "\n".join(rows)
