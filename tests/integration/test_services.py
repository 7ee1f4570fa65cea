"""The real services answer as the app needs them to (fixtures: tests/plugins/services.py)."""
from __future__ import annotations

import io
import os
import secrets
import smtplib
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest

from scripts import services

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- Neo4j

def test_neo4j_write_then_read(neo4j_service: services.Neo4jHandle) -> None:
    import neo4j

    marker = secrets.token_hex(8)
    with neo4j.GraphDatabase.driver(neo4j_service.uri,
                                    auth=(neo4j_service.user, neo4j_service.password)) as driver:
        driver.execute_query("MERGE (n:ServiceCheck {marker: $m}) SET n.note = $note",
                             m=marker, note="written")
        # a second MERGE must find the node, not make another
        driver.execute_query("MERGE (n:ServiceCheck {marker: $m})", m=marker)
        records, _, _ = driver.execute_query(
            "MATCH (n:ServiceCheck {marker: $m}) RETURN n.note AS note", m=marker)
    assert [r["note"] for r in records] == ["written"]


def test_neo4j_refuses_wrong_password(neo4j_service: services.Neo4jHandle) -> None:
    import neo4j
    from neo4j.exceptions import AuthError

    with (neo4j.GraphDatabase.driver(neo4j_service.uri,
                                     auth=(neo4j_service.user, "not-the-password")) as driver,
          pytest.raises(AuthError)):
        driver.execute_query("RETURN 1")


def test_neo4j_listens_on_loopback_only(neo4j_service: services.Neo4jHandle) -> None:
    # the HTTP discovery document advertises the Bolt address it was given
    import json
    import urllib.request

    with urllib.request.urlopen(neo4j_service.http_url + "/", timeout=5) as r:
        doc = json.load(r)
    assert doc["bolt_direct"] == f"bolt://127.0.0.1:{neo4j_service.bolt_port}"


# --------------------------------------------------------------------------- S3

def _until(days: int) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)


def test_s3_put_get_bytes_match(s3_service: services.S3Handle) -> None:
    client = s3_service.client()
    data = secrets.token_bytes(300_000)
    name = f"roundtrip/{secrets.token_hex(6)}.bin"
    client.put_object(s3_service.bucket, name, io.BytesIO(data), len(data),
                      content_type="application/octet-stream")
    resp = client.get_object(s3_service.bucket, name)
    try:
        assert resp.read() == data
    finally:
        resp.close()
        resp.release_conn()


@pytest.mark.parametrize("mode", ["GOVERNANCE", "COMPLIANCE"])
def test_s3_retention_keeps_locked_version(s3_service: services.S3Handle, mode: str) -> None:
    from minio.commonconfig import COMPLIANCE, GOVERNANCE
    from minio.error import S3Error
    from minio.retention import Retention

    client = s3_service.client()
    bucket = s3_service.bucket
    name = f"retained/{mode.lower()}-{secrets.token_hex(6)}.txt"
    retention = Retention(GOVERNANCE if mode == "GOVERNANCE" else COMPLIANCE, _until(3))
    locked = client.put_object(bucket, name, io.BytesIO(b"original"), 8, retention=retention)
    assert locked.version_id
    assert client.get_object_retention(bucket, name, version_id=locked.version_id).mode == mode

    # Overwriting is allowed: it makes a new version and the locked one stays.
    newer = client.put_object(bucket, name, io.BytesIO(b"overwrite"), 9)
    assert newer.version_id and newer.version_id != locked.version_id
    listed = client.list_objects(bucket, prefix=name, include_version=True)
    versions = {o.version_id for o in listed}
    assert {locked.version_id, newer.version_id} <= versions

    # Deleting the locked version is refused by the server.
    with pytest.raises(S3Error) as refused:
        client.remove_object(bucket, name, version_id=locked.version_id)
    assert refused.value.code == "AccessDenied"
    # Shortening the retention is refused as well.
    with pytest.raises(S3Error) as shortened:
        client.set_object_retention(bucket, name, Retention(mode, _until(1)),
                                    version_id=locked.version_id)
    assert shortened.value.code == "AccessDenied"

    got = client.get_object(bucket, name, version_id=locked.version_id)
    try:
        assert got.read() == b"original"
    finally:
        got.close()
        got.release_conn()


def test_s3_compliance_cannot_be_bypassed(s3_service: services.S3Handle) -> None:
    """x-amz-bypass-governance-retention lifts GOVERNANCE for the root account,
    never COMPLIANCE."""
    from minio.commonconfig import COMPLIANCE, GOVERNANCE
    from minio.deleteobjects import DeleteObject
    from minio.retention import Retention

    client = s3_service.client()
    bucket = s3_service.bucket
    gov = client.put_object(bucket, f"bypass/gov-{secrets.token_hex(4)}", io.BytesIO(b"g"), 1,
                            retention=Retention(GOVERNANCE, _until(3)))
    comp = client.put_object(bucket, f"bypass/comp-{secrets.token_hex(4)}", io.BytesIO(b"c"), 1,
                             retention=Retention(COMPLIANCE, _until(3)))
    errors = list(client.remove_objects(
        bucket, [DeleteObject(gov.object_name, gov.version_id),
                 DeleteObject(comp.object_name, comp.version_id)],
        bypass_governance_mode=True))
    assert [(e.name, e.code) for e in errors] == [(comp.object_name, "AccessDenied")]


def test_s3_legal_hold_prevents_delete(s3_service: services.S3Handle) -> None:
    from minio.error import S3Error

    client = s3_service.client()
    bucket = s3_service.bucket
    name = f"held/{secrets.token_hex(6)}.txt"
    put = client.put_object(bucket, name, io.BytesIO(b"exhibit"), 7, legal_hold=True)
    assert client.is_object_legal_hold_enabled(bucket, name, version_id=put.version_id)
    with pytest.raises(S3Error) as refused:
        client.remove_object(bucket, name, version_id=put.version_id)
    assert refused.value.code == "AccessDenied"

    client.disable_object_legal_hold(bucket, name, version_id=put.version_id)
    client.remove_object(bucket, name, version_id=put.version_id)  # now allowed
    assert not [o for o in client.list_objects(bucket, prefix=name, include_version=True)]


# --------------------------------------------------------------------------- Celery

def test_celery_round_trip_through_real_worker(celery_worker: services.CeleryWorkerHandle) -> None:
    from taskforce import create_app
    from taskforce.health.tasks import ping

    app = create_app(environ=celery_worker.environ)
    celery = app.extensions["celery"]
    assert not celery.conf.task_always_eager
    assert celery.conf.broker_url == celery_worker.broker_url
    # Celery caches its result backend on first use; one left from an earlier
    # create_app() in this process would make .get() below wait in vain.
    assert type(celery.backend).__name__ == "RedisBackend", (
        f"stale Celery result backend {type(celery.backend).__name__} from an earlier app; "
        "taskforce.jobs.init_app must not reuse it")
    token = secrets.token_hex(8)
    with app.app_context():
        result = ping.delay(token).get(timeout=30)
    assert result["token"] == token
    assert result["pid"] != os.getpid()
    assert result["pid"] == celery_worker.pid  # --pool=solo: the task runs in the worker itself


# --------------------------------------------------------------------------- SMTP

def test_smtp_mail_is_delivered_and_read_back(smtp_service: services.SmtpHandle) -> None:
    subject = f"Deconfliction hit {secrets.token_hex(4)}"
    msg = EmailMessage()
    msg["From"] = "taskforce@localhost"
    msg["To"] = "analyst@example.org"
    msg["Subject"] = subject
    msg.set_content("A phone number in your case matches case 2024-017.\n")
    with smtplib.SMTP(smtp_service.host, smtp_service.port, timeout=10) as s:
        s.send_message(msg)

    [got] = services.read_mail(smtp_service, match=lambda m: m["Subject"] == subject)
    assert got["To"] == "analyst@example.org"
    body = got.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content() == "A phone number in your case matches case 2024-017.\n"


# --------------------------------------------------------------------------- PostgreSQL

def test_postgres_create_insert_select(postgres_service: services.PostgresHandle) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_service.url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE service_check (id serial PRIMARY KEY, note text)"))
            conn.execute(sa.text("INSERT INTO service_check (note) VALUES (:n), (:m)"),
                         {"n": "first", "m": "second"})
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT note FROM service_check ORDER BY id"))
            notes = rows.scalars().all()
            version = conn.execute(sa.text("SHOW server_version")).scalar_one()
    finally:
        engine.dispose()
    assert notes == ["first", "second"]
    assert version.split(".")[0].isdigit()
