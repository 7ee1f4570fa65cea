"""/healthz: the process is up. /readyz: each service it needs answers, named."""
from __future__ import annotations

import time
from collections.abc import Callable

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from taskforce.accounts.permissions import public
from taskforce.extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@public
def healthz():
    return jsonify(status="ok")


def _database() -> str:
    db.session.execute(text("SELECT 1"))
    return "ok"


def _neo4j() -> str:
    from taskforce.graph import client

    client.driver().verify_connectivity()
    return "ok"


def _evidence_store() -> str:
    cfg = current_app.config
    if not cfg["S3_ENDPOINT"]:
        import os

        return "ok (local folder)" if os.access(cfg["EVIDENCE_DIR"], os.W_OK) or not \
            os.path.exists(cfg["EVIDENCE_DIR"]) else "not writable"
    from minio import Minio

    client = Minio(cfg["S3_ENDPOINT"], access_key=cfg["S3_ACCESS_KEY"],
                   secret_key=cfg["S3_SECRET_KEY"], secure=cfg["S3_SECURE"])
    return "ok" if client.bucket_exists(cfg["S3_BUCKET"]) else "bucket missing"


def _broker() -> str:
    url = current_app.config["CELERY_BROKER_URL"]
    if not url:
        return "ok (in-process jobs)"
    import redis

    redis.Redis.from_url(url, socket_timeout=2).ping()
    return "ok"


def _smtp() -> str:
    cfg = current_app.config
    if not cfg["SMTP_HOST"]:
        return "ok (mail is logged)"
    import smtplib

    with smtplib.SMTP(cfg["SMTP_HOST"], cfg["SMTP_PORT"], timeout=2) as s:
        s.noop()
    return "ok"


CHECKS: dict[str, Callable[[], str]] = {
    "database": _database, "neo4j": _neo4j, "evidence_store": _evidence_store,
    "broker": _broker, "smtp": _smtp,
}


@bp.get("/readyz")
@public
def readyz():
    results, ready = {}, True
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            status = check()
        except Exception as exc:  # noqa: BLE001  (a probe reports, it does not crash)
            status = f"down: {type(exc).__name__}: {exc}"[:200]
        ok = status.startswith("ok")
        ready &= ok
        results[name] = {"status": status, "ms": round((time.monotonic() - started) * 1000, 1)}
    return jsonify(ready=ready, services=results), (200 if ready else 503)
