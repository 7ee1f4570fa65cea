"""Packages, custody steps and reports over HTTP: pages with CSRF, the JSON API,
expiring prosecutor access (403 with a message), and audit of every download."""
from __future__ import annotations

import io
import zipfile
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from taskforce.audit.models import AuditEvent
from taskforce.evidence import service
from taskforce.evidence.models import CustodyEvent, Package
from taskforce.extensions import db
from taskforce.investigations import service as cases
from tests.factories import make_agency
from tests.factories_investigations import (
    api_caller,
    browser,
    ensure_registered,
    make_case,
    person,
)

RAW = "application/octet-stream"


@pytest.fixture()
def ev_app(app):
    from taskforce import evidence

    ensure_registered(app)
    if "evidence" not in app.blueprints:
        evidence.init_app(app)
    return app


@pytest.fixture()
def world(ev_app):
    agency = make_agency()
    page, lead_user = browser(ev_app, agency=agency)
    from tests.factories_investigations import actor_for

    lead = actor_for(lead_user)
    case_id = make_case(lead)
    api = api_caller(ev_app, lead_user)
    return ev_app, page, lead_user, lead, case_id, api


def upload(api, case_id, data: bytes, description="Phone extraction"):
    resp = api.client.post(f"/api/v1/cases/{case_id}/evidence?description={description}"
                           "&filename=x.bin", data=data,
                           headers={**api._headers(), "Content-Type": RAW})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def test_build_and_download_a_package_over_the_api(world):
    app, _page, _lead_user, _lead, case_id, api = world
    ids = [upload(api, case_id, b"first item bytes"), upload(api, case_id, b"second")]
    resp = api.post(f"/api/v1/cases/{case_id}/packages", json={"item_ids": ids})
    assert resp.status_code == 202, resp.get_json()
    body = api.get(resp.get_json()["page_url"].replace("/packages/", "/api/v1/packages/")
                   ).get_json()
    assert body["status"] == "ready" and len(body["sha256"]) == 64
    resp = api.get(body["content_url"])
    assert resp.status_code == 200 and resp.mimetype == "application/zip"
    assert resp.headers["X-Content-SHA256"] == body["sha256"]
    with zipfile.ZipFile(io.BytesIO(resp.data)) as zf:
        assert "manifest.json" in zf.namelist()
    # bad input: 422 with the field, nothing made
    for bad in ({"item_ids": []}, {"item_ids": ["x"]}, {"item_ids": [ids[0], 10**6]}, {}):
        resp = api.post(f"/api/v1/cases/{case_id}/packages", json=bad)
        assert resp.status_code == 422, (bad, resp.get_json())
    assert db.session.scalar(select(func.count()).select_from(Package)) == 1
    # an outsider does not learn the package exists
    outsider, _ = person()
    assert api_caller(app, outsider).get(f"/api/v1/packages/{body['id']}").status_code == 404


def test_expired_prosecutor_access_is_refused_with_a_message(world, monkeypatch):
    app, _page, _lead_user, _lead, case_id, api = world
    item_id = upload(api, case_id, b"ad screenshot")
    package_id = api.post(f"/api/v1/cases/{case_id}/packages",
                          json={"item_ids": [item_id]}).get_json()["id"]
    prosecutor, _ = person(roles=("prosecutor",))
    until = (service.now() + timedelta(days=1)).replace(microsecond=0)
    resp = api.post(f"/api/v1/packages/{package_id}/grants",
                    json={"to_username": prosecutor.username, "expires_at": until.isoformat()})
    assert resp.status_code == 201, resp.get_json()
    pros = api_caller(app, prosecutor)
    mine = pros.get("/api/v1/packages").get_json()
    assert [g["package"]["id"] for g in mine] == [package_id]
    assert pros.get(f"/api/v1/cases/{case_id}/packages").status_code == 404  # no case access
    assert pros.get(f"/api/v1/packages/{package_id}/content").status_code == 200
    monkeypatch.setattr(service, "now", lambda: until + timedelta(seconds=1))
    resp = pros.get(f"/api/v1/packages/{package_id}/content")
    assert resp.status_code == 403
    assert "expired" in resp.get_json()["error"]["message"]
    assert db.session.scalar(select(func.count()).select_from(CustodyEvent).where(
        CustodyEvent.item_id == item_id, CustodyEvent.kind == "ACCESSED")) == 1
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "evidence.package_download")) == 2  # one allowed, one denied


def test_pages_build_a_package_and_accept_a_hand_over_with_csrf(world):
    app, page, _lead_user, lead, case_id, api = world
    item_id = upload(api, case_id, b"bytes for the page")
    html = page.get(f"/cases/{case_id}/evidence").data.decode()
    assert 'data-testid="build-package"' in html
    resp = page.post(f"/cases/{case_id}/evidence/packages", data={"item_ids": str(item_id)})
    assert resp.status_code == 302
    package_url = resp.headers["Location"]
    html = page.get(package_url).data.decode()
    assert "Ready" in html and 'data-testid="download-package"' in html
    resp = page.get(package_url + "/download")
    assert resp.status_code == 200 and resp.data[:2] == b"PK"
    assert b"No package is shared with you" in page.get("/packages").data
    # nothing selected: the page again with the message
    resp = page.post(f"/cases/{case_id}/evidence/packages", data={})
    assert resp.status_code == 422 and b"Choose at least one item" in resp.data
    # without the CSRF token: refused
    resp = page.client.post(f"/cases/{case_id}/evidence/packages",
                            data={"item_ids": str(item_id)}, headers={"Accept": "text/html"})
    assert resp.status_code == 400

    # a hand-over asked on the item page, accepted on the receiver's page
    other_page, other = browser(app, agency=make_agency())
    cases.add_member(actor=lead, case_id=case_id, user_id=other.id, case_role="investigator")
    resp = page.post(f"/evidence/{item_id}/transfer",
                     data={"to_username": other.username, "reason": "Lab work"})
    assert resp.status_code == 302
    html = other_page.get("/evidence/transfers").data.decode()
    assert 'data-testid="incoming-transfer"' in html
    transfer_id = int(html.split("/evidence/transfers/")[1].split("/")[0])
    resp = other_page.post(f"/evidence/transfers/{transfer_id}/accept", data={"note": "ok"})
    assert resp.status_code == 302
    html = other_page.get(f"/evidence/{item_id}").data.decode()
    assert other.username in html.split('data-testid="custodian"')[1][:300]

    # the custody report, by page and by API
    resp = page.get(f"/evidence/{item_id}/custody-report.pdf")
    assert resp.status_code == 200 and resp.data[:5] == b"%PDF-"
    resp = api.get(f"/api/v1/cases/{case_id}/custody-report")
    assert resp.status_code == 200 and resp.mimetype == "application/pdf"


def test_role_gates_on_hold_dispose_and_survivor_release(world):
    _app, _page, _lead_user, _lead, case_id, api = world
    item_id = upload(api, case_id, b"gated")
    # the lead is an investigator: the supervisor-only and specialist-only endpoints say 403
    assert api.post(f"/api/v1/cases/{case_id}/legal-hold",
                    json={"reason": "x"}).status_code == 403
    assert api.post(f"/api/v1/evidence/{item_id}/dispose",
                    json={"method": "x", "reason": "y"}).status_code == 403
    assert api.post(f"/api/v1/evidence/{item_id}/survivor-release",
                    json={"reason": "y"}).status_code == 403
    resp = api.post(f"/api/v1/evidence/{item_id}/check-out", json={"to": "Lab"})
    assert resp.status_code == 422 and "reason" in resp.get_json()["error"]["fields"]
    resp = api.post(f"/api/v1/evidence/{item_id}/check-out",
                    json={"to": "Lab", "reason": "Exam"})
    assert resp.status_code == 200 and resp.get_json()["item"]["state"] == "checked_out"
    resp = api.post(f"/api/v1/evidence/{item_id}/seal", json={"seal_number": "S1"})
    assert resp.status_code == 409


def test_a_victim_specialist_releases_a_survivor_on_the_case_page(ev_app):
    from tests.factories_graph import add_person, ensure_graph_registered

    ensure_graph_registered(ev_app)
    agency = make_agency()
    _lead_user, lead = person(agency=agency)
    case_id = make_case(lead)
    add_person(lead, case_id, "Philippa Oyelaran", role="victim")
    page, specialist = browser(ev_app, user_roles=("victim_specialist",), agency=agency)
    cases.add_member(actor=lead, case_id=case_id, user_id=specialist.id,
                     case_role="victim_specialist")
    html = page.get(f"/cases/{case_id}/evidence").data.decode()
    assert 'data-testid="survivor-releases"' in html and "Philippa Oyelaran" in html
    entity_id = int(html.split('name="entity_id" value="')[1].split('"')[0])
    resp = page.post(f"/cases/{case_id}/evidence/survivor-releases",
                     data={"entity_id": str(entity_id), "reason": ""})
    assert resp.status_code == 422
    resp = page.post(f"/cases/{case_id}/evidence/survivor-releases",
                     data={"entity_id": str(entity_id), "reason": "She testifies"})
    assert resp.status_code == 302
    assert "Identity released" in page.get(f"/cases/{case_id}/evidence").data.decode()
    # an investigator on the team sees no such section
    inv_page, inv = browser(ev_app, agency=agency)
    cases.add_member(actor=lead, case_id=case_id, user_id=inv.id, case_role="investigator")
    html = inv_page.get(f"/cases/{case_id}/evidence").data.decode()
    assert "survivor-releases" not in html and "Oyelaran" not in html
