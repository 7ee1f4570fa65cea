"""The integrity sweep against the real S3 server (versitygw) and the real SMTP server.

Tampering is done behind the app's back, as an insider with disk access
would: one byte flipped in versitygw's posix data folder, where the current
version of an object is a plain file (for a large upload without a client
hash, the file of the blob its pointer names).
"""
from __future__ import annotations

import io
import json
import secrets

import pytest
from sqlalchemy import select

from scripts import services
from taskforce.accounts.permissions import Actor
from taskforce.evidence import tasks
from taskforce.evidence.models import CustodyEvent, EvidenceItem, IntegrityAlert
from taskforce.evidence.storage import S3_PART_SIZE, get_store
from taskforce.extensions import db
from tests.factories import make_agency
from tests.factories_investigations import api_caller, make_case, person
from tests.integration.test_evidence_storage import Generated, _post

pytestmark = pytest.mark.integration


@pytest.fixture()
def app_environ(app_environ, s3_service, smtp_service):
    return {**app_environ, **s3_service.env(), **smtp_service.env(),
            "TASKFORCE_BASE_URL": "https://taskforce.example.gov"}


@pytest.fixture()
def world(app):
    from taskforce import evidence
    from tests.factories_investigations import ensure_registered

    ensure_registered(app)
    if "evidence" not in app.blueprints:
        evidence.init_app(app)
    agency = make_agency()
    lead, lead_actor = person(agency=agency)
    supervisor, _ = person(agency=agency, roles=("supervisor",))
    outsider, _ = person(agency=make_agency(), roles=("supervisor",))
    case_id = make_case(lead_actor, title="Operation Nightjar")
    caller = api_caller(app, lead)
    small = _post(caller, case_id, Generated(3 * 1024 * 1024)).get_json()
    large = _post(caller, case_id, Generated(2 * S3_PART_SIZE + 99)).get_json()
    return {"lead": lead, "supervisor": supervisor, "outsider": outsider, "case_id": case_id,
            "caller": caller, "items": [small, large]}


def _flip(s3, key: str, offset: int = 4321) -> None:
    path = s3.workdir / "data" / s3.bucket / key
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x20]))


def _kinds(item_id: int) -> list[str]:
    db.session.rollback()
    return list(db.session.scalars(select(CustodyEvent.kind).where(CustodyEvent.item_id == item_id)
                                   .order_by(CustodyEvent.seq)))


def test_sweep_verifies_every_item_and_finds_a_flipped_byte(app, world, runner, s3_service,
                                                             smtp_service):
    small, large = world["items"]
    result = runner.invoke(args=["evidence", "sweep"])
    assert result.exit_code == 0, result.output
    assert "intact 2" in result.output and "failed 0" in result.output
    for item in (small, large):
        assert _kinds(item["id"])[-1] == "VERIFIED"

    data_key, _ = get_store().data_location(large["sha256"])
    assert data_key.startswith("blobs/")
    _flip(s3_service, data_key)

    result = runner.invoke(args=["evidence", "sweep"])
    assert result.exit_code == 1
    assert "intact 1" in result.output and "failed 1" in result.output
    db.session.rollback()
    broken = db.session.get(EvidenceItem, large["id"])
    assert broken.integrity == "mismatch"
    last = db.session.scalar(select(CustodyEvent).where(CustodyEvent.item_id == large["id"])
                             .order_by(CustodyEvent.seq.desc()).limit(1))
    details = json.loads(last.details)
    assert last.kind == "VERIFIED" and details["ok"] is False
    assert details["expected_sha256"] == large["sha256"] != details["actual_sha256"]
    assert db.session.get(EvidenceItem, small["id"]).integrity == "ok"

    # alerts in the app: the case lead and the agency's supervisor, nobody else
    alerts = list(db.session.scalars(select(IntegrityAlert)))
    assert sorted(a.user_id for a in alerts) == sorted([world["lead"].id,
                                                        world["supervisor"].id])
    assert {a.item_id for a in alerts} == {large["id"]}
    # and by email, holding no identifiers
    for user in (world["lead"], world["supervisor"]):
        [msg] = services.read_mail(smtp_service, match=lambda m, u=user: u.email in str(m["To"]))
        text = msg.get_content() + str(msg["Subject"])
        assert "https://taskforce.example.gov/evidence/alerts" in text
        for leak in ("Nightjar", large["sha256"], large["number"], f"/evidence/{large['id']}",
                     data_key):
            assert leak not in text
    with pytest.raises(TimeoutError):
        services.read_mail(smtp_service, timeout=0.5, remove=False,
                           match=lambda m: world["outsider"].email in str(m["To"]))

    # the same finding again: VERIFIED appended, no second alert
    tasks.integrity_sweep.delay()
    db.session.rollback()
    assert len(list(db.session.scalars(select(IntegrityAlert)))) == 2
    assert _kinds(large["id"]).count("VERIFIED") == 3

    # the lead reads the alert in the app
    got = world["caller"].get("/api/v1/evidence/integrity-alerts")
    assert got.status_code == 200, got.get_json()
    [alert] = got.get_json()["alerts"]
    assert alert["item_id"] == large["id"] and alert["expected_sha256"] == large["sha256"]


def test_sweep_removes_orphans_past_their_grace_only(app, world, runner, s3_service):
    client, bucket = s3_service.client(), s3_service.bucket
    orphan = f"blobs/20000101/{secrets.token_hex(16)}"
    client.put_object(bucket, orphan, io.BytesIO(b"an upload that never got its pointer"), 36)
    result = runner.invoke(args=["evidence", "sweep"])
    assert result.exit_code == 0 and "orphaned uploads removed 0" in result.output
    result = runner.invoke(args=["evidence", "sweep", "--grace-hours", "0"])
    assert result.exit_code == 0, result.output
    assert "orphaned uploads removed 1" in result.output
    assert not list(client.list_objects(bucket, prefix=orphan))
    # what items point at is never removed
    for item in world["items"]:
        assert get_store().exists(item["sha256"])


def test_missing_object_raises_an_alert(app, world, s3_service):
    small, _ = world["items"]
    # delete the bytes behind the app's back (the server would refuse through S3)
    (s3_service.workdir / "data" / s3_service.bucket / small["storage_key"]).unlink()
    result = tasks.sweep()
    assert [f["item_id"] for f in result["failed"]] == [small["id"]]
    assert result["alerts"] == 2
    db.session.rollback()
    assert db.session.get(EvidenceItem, small["id"]).integrity == "missing"


def test_outsider_sees_no_alerts(app, world):
    tasks.sweep(store=get_store())
    outsider = api_caller(app, world["outsider"])
    assert outsider.get("/api/v1/evidence/integrity-alerts").get_json()["alerts"] == []
    assert Actor.system("x").user_id is None
