"""Prosecutor packages and legal holds against the real S3 server (bucket with object
lock), through the HTTP API, on SQLite and PostgreSQL: the package ZIP is stored in
the evidence store under its own hash, verifies offline, and a changed file is named;
a legal hold is an S3 object legal hold, and disposal is refused while it is on."""
from __future__ import annotations

import io
import zipfile

import pytest
from fpdf import FPDF
from sqlalchemy import select

from taskforce.evidence import verify as verifier
from taskforce.evidence.models import CustodyEvent
from taskforce.evidence.storage import S3Store, get_store
from taskforce.extensions import db
from tests.factories_investigations import api_caller, ensure_registered, make_case, person

pytestmark = pytest.mark.integration

RAW = "application/octet-stream"


@pytest.fixture()
def app_environ(app_environ, s3_service):
    return {**app_environ, **s3_service.env()}


@pytest.fixture()
def world(app):
    from taskforce import evidence

    ensure_registered(app)
    if "evidence" not in app.blueprints:
        evidence.init_app(app)
    lead_user, lead = person()
    case_id = make_case(lead)
    return lead_user, lead, case_id, api_caller(app, lead_user)


def _pdf(pages: int) -> bytes:
    pdf = FPDF()
    for n in range(pages):
        pdf.add_page()
        pdf.set_font("Helvetica", size=14)
        pdf.cell(0, 10, f"Subpoena return page {n + 1}")
    return bytes(pdf.output())


def _upload(api, case_id, data: bytes, name: str) -> dict:
    resp = api.client.post(f"/api/v1/cases/{case_id}/evidence?description=Item%20{name}"
                           f"&filename={name}", data=data,
                           headers={**api._headers(), "Content-Type": RAW})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def _verify(capsys, path) -> tuple[int, str]:
    code = verifier.main([str(path)])
    return code, capsys.readouterr().out


def test_a_package_stored_on_s3_verifies_offline_and_a_changed_file_is_named(
        app, world, tmp_path, capsys):
    _lead_user, _lead, case_id, api = world
    assert isinstance(get_store(), S3Store)
    items = [_upload(api, case_id, _pdf(2), "return.pdf"),
             _upload(api, case_id, b"\x89PNG\r\n\x1a\n" + b"pixels" * 4000, "ad.png")]
    resp = api.post(f"/api/v1/cases/{case_id}/packages",
                    json={"item_ids": [i["id"] for i in items], "bates_prefix": "USAO"})
    assert resp.status_code == 202, resp.get_json()
    package = api.get(f"/api/v1/packages/{resp.get_json()['id']}").get_json()
    assert package["status"] == "ready", package["error"]
    assert get_store().exists(package["sha256"])  # the ZIP itself is evidence, under its hash
    resp = api.get(package["content_url"])
    assert resp.status_code == 200
    path = tmp_path / "package.zip"
    path.write_bytes(resp.data)
    code, out = _verify(capsys, path)
    assert code == 0 and "INTACT" in out and package["key_fingerprint"] in out

    # EXPORTED when packed, ACCESSED when downloaded, on each item; the ledger still holds
    for item in items:
        kinds = list(db.session.scalars(select(CustodyEvent.kind).where(
            CustodyEvent.item_id == item["id"]).order_by(CustodyEvent.seq)))
        assert kinds[-2:] == ["EXPORTED", "ACCESSED"]

    with zipfile.ZipFile(path) as zf:
        target = next(n for n in zf.namelist() if n.startswith("items/") and n.endswith("ad.png"))
        changed = tmp_path / "changed.zip"
        with zipfile.ZipFile(changed, "w") as out_zip:
            for info in zf.infolist():
                data = zf.read(info)
                out_zip.writestr(info, data + b"!" if info.filename == target else data)
    code, out = _verify(capsys, changed)
    assert code == 1 and target in out


def test_a_legal_hold_is_an_object_legal_hold_and_blocks_disposal(app, world):
    lead_user, _lead, case_id, api = world
    supervisor_user, _ = person(agency=lead_user.agency, roles=("supervisor",))
    item = _upload(api, case_id, b"held bytes " * 100, "held.bin")
    sup = api_caller(app, supervisor_user)
    resp = sup.post(f"/api/v1/cases/{case_id}/legal-hold", json={"reason": "Defence letter"})
    assert resp.status_code == 201, resp.get_json()
    status = get_store().lock_status(item["sha256"])
    assert status.legal_hold and status.enforced  # set on the object by the S3 server
    resp = sup.post(f"/api/v1/evidence/{item['id']}/dispose",
                    json={"method": "Wipe", "reason": "Closed"})
    assert resp.status_code == 409 and "legal hold" in resp.get_json()["error"]["message"]
    resp = sup.post(f"/api/v1/cases/{case_id}/legal-hold/clear", json={"reason": "Over"})
    assert resp.status_code == 200 and resp.get_json()["active"] is False
    assert not get_store().lock_status(item["sha256"]).legal_hold
    resp = sup.post(f"/api/v1/evidence/{item['id']}/dispose",
                    json={"method": "Wipe", "reason": "Closed"})
    assert resp.status_code == 200 and resp.get_json()["item"]["state"] == "disposed"
    assert get_store().exists(item["sha256"])  # the bytes stay under retention


def test_the_package_is_built_by_the_real_celery_worker(celery_worker, tmp_path, capsys):
    """The request commits and queues the job on Redis; the worker (another process,
    the same database and evidence folder) builds, signs and stores the package."""
    import time

    from taskforce import create_app
    from taskforce.evidence import packages
    from taskforce.evidence.models import Package

    app = create_app(environ=dict(celery_worker.environ))
    with app.app_context():
        from taskforce import evidence

        assert not app.extensions["celery"].conf.task_always_eager
        if "evidence" not in app.blueprints:
            evidence.init_app(app)
        db.create_all()
        _user, lead = person()
        case_id = make_case(lead)
        from taskforce.evidence import service

        item = service.ingest(actor=lead, case_id=case_id, stream=io.BytesIO(_pdf(3)),
                              description="Subpoena return", filename="return.pdf")
        package = packages.request_package(actor=lead, case_id=case_id, item_ids=[item.id])
        assert package.status == "building"  # answered before the work is done
        package_id = package.id
        deadline = time.monotonic() + 90
        while package.status == "building" and time.monotonic() < deadline:
            time.sleep(0.3)
            db.session.rollback()
            package = db.session.get(Package, package_id, populate_existing=True)
        assert package.status == "ready", package.error
        dl = packages.download_package(actor=lead, package_id=package_id)
        path = tmp_path / dl.filename
        with open(path, "wb") as f:
            f.writelines(dl.chunks)
        assert verifier.main([str(path)]) == 0
        assert "INTACT" in capsys.readouterr().out
        db.session.remove()
        db.engine.dispose()
