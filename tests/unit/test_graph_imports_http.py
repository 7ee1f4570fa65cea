"""Imports over HTTP (JSON API, the case's import page, the run page, the mapping page)
and `flask graph import`, on SQLite with the local evidence folder, Celery eager and
Neo4j unreachable.

Need to know (404 for outsiders on every route), 415/422 with nothing written, the
same file again answered 200 with created=false, the pages and the audit trail.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from taskforce.audit.models import AuditEvent
from taskforce.evidence.models import EvidenceItem
from taskforce.extensions import db
from taskforce.graph.models import ColumnMapping, ImportRun, Link
from taskforce.investigations import service as cases
from tests.factories import login, make_user
from tests.factories_graph import closed_bolt_uri, count, ensure_graph_registered, make_team
from tests.factories_investigations import Browser, api_caller

A, B, C = "+13125550101", "+13125550102", "+13125550103"
CDR = (f"caller,callee,start,duration\n{A},{B},2024-03-01T10:00:00,60\n"
       f"{A},{B},2024-03-02T10:00:00,5\n{B},{C},2024-03-03T10:00:00,1\n"
       f"{A},bogus,2024-03-03T10:00:00,1\n").encode()


@pytest.fixture()
def app_environ(app_environ):
    return {**app_environ, "NEO4J_URI": closed_bolt_uri(), "NEO4J_PASSWORD": "unused"}


@pytest.fixture(autouse=True)
def _registered(app):
    ensure_graph_registered(app)


@pytest.fixture()
def team(app):
    return make_team()


def member_browser(app, team, *, case_role="investigator"):
    """A signed-in browser of a new team member of the case."""
    user, password, secret = make_user(agency=team.lead_agency, roles=["investigator"])
    cases.add_member(actor=team.lead[1], case_id=team.case_id, user_id=user.id,
                     case_role=case_role)
    client = app.test_client()
    login(client, user.username, password, secret)
    return Browser(client=client), user


def outsider_browser(app, team):
    user, password, secret = make_user(agency=team.other_agency,
                                       roles=["investigator", "supervisor"])
    client = app.test_client()
    login(client, user.username, password, secret)
    return Browser(client=client)


def raw_post(caller, url, data, content_type="text/csv"):
    return caller.client.post(url, data=data, headers={**caller._headers(),
                                                       "Content-Type": content_type})


def test_api_import_then_the_same_file_again(app, team):
    api = api_caller(app, team.lead[0])
    url = f"/api/v1/cases/{team.case_id}/imports?kind=cdr&filename=calls.csv"
    first = raw_post(api, url, CDR)
    assert first.status_code == 202, first.json
    body = first.json
    assert body["created"] is True and body["status"] == "done"  # eager: done on return
    assert (body["rows_read"], body["rows_loaded"], body["rows_bad"]) == (4, 3, 1)
    assert body["bad_rows"][0]["line"] == 5 and "callee 'bogus'" in body["bad_rows"][0]["reason"]
    assert body["provenance_ref"] == f"import-{body['id']}"
    assert body["evidence_item_id"] == db.session.scalar(select(EvidenceItem.id))
    status = api.get(body["status_url"])
    assert status.status_code == 200 and status.json["progress"] == 1.0
    again = raw_post(api, url, CDR)
    assert again.status_code == 200 and again.json["created"] is False
    assert again.json["id"] == body["id"] and "already imported" in again.json["message"]
    assert count(ImportRun) == 1 and count(EvidenceItem) == 1 and count(Link) == 2
    listed = api.get(f"/api/v1/cases/{team.case_id}/imports")
    assert [r["id"] for r in listed.json] == [body["id"]]


@pytest.mark.parametrize("data, content_type, status", [
    (b"%PDF-1.4\n\x00\x00binary", "text/csv", 415),
    (CDR, "multipart/form-data; boundary=x", 415),
    (b"name,notes\nx,y\n", "text/csv", 422),
    (b"caller,callee,start,duration\n\xff\xfe,x,y,z\n", "text/csv", 422),
    (b"", "text/csv", 422),
])
def test_api_refuses_what_is_not_csv_and_writes_nothing(app, team, data, content_type, status):
    api = api_caller(app, team.lead[0])
    resp = raw_post(api, f"/api/v1/cases/{team.case_id}/imports?kind=cdr", data, content_type)
    assert resp.status_code == status, resp.json
    assert resp.json["error"]["message"]
    assert count(ImportRun) == 0 and count(EvidenceItem) == 0 and count(Link) == 0


def test_api_bad_options_are_422(app, team):
    api = api_caller(app, team.lead[0])
    resp = raw_post(api, f"/api/v1/cases/{team.case_id}/imports?kind=phonebook", CDR)
    assert resp.status_code == 422 and "kind" in str(resp.json["error"]["fields"])
    resp = raw_post(api, f"/api/v1/cases/{team.case_id}/imports?kind=generic", CDR)
    assert resp.status_code == 422 and "mapping_id" in resp.json["error"]["fields"]


def test_outsiders_get_404_everywhere(app, team):
    api = api_caller(app, team.lead[0])
    run_id = raw_post(api, f"/api/v1/cases/{team.case_id}/imports?kind=cdr", CDR).json["id"]
    outsider = api_caller(app, team.outsider[0])
    assert raw_post(outsider, f"/api/v1/cases/{team.case_id}/imports?kind=cdr",
                    CDR.replace(b"bogus", b"other")).status_code == 404
    assert outsider.get(f"/api/v1/cases/{team.case_id}/imports").status_code == 404
    assert outsider.get(f"/api/v1/imports/{run_id}").status_code == 404
    assert outsider.get("/api/v1/imports/999999").status_code == 404
    page = outsider_browser(app, team)
    assert page.get(f"/cases/{team.case_id}/imports").status_code == 404
    assert page.get(f"/imports/{run_id}").status_code == 404
    resp = page.post(f"/cases/{team.case_id}/imports",
                     {"kind": "cdr", "file": (__import__("io").BytesIO(CDR), "c.csv")},
                     content_type="multipart/form-data")
    assert resp.status_code == 404
    assert count(ImportRun) == 1
    denied = db.session.scalars(select(AuditEvent).where(AuditEvent.outcome == "denied",
                                                         AuditEvent.action.like("import.%")))
    assert {e.action for e in denied} >= {"import.start", "import.list", "import.read"}


def test_a_read_only_partner_sees_imports_but_cannot_import(app, team):
    api = api_caller(app, team.lead[0])
    run_id = raw_post(api, f"/api/v1/cases/{team.case_id}/imports?kind=cdr", CDR).json["id"]
    reader = api_caller(app, team.partner_investigator[0])
    assert reader.get(f"/api/v1/imports/{run_id}").status_code == 200
    resp = raw_post(reader, f"/api/v1/cases/{team.case_id}/imports?kind=cdr",
                    CDR.replace(b"bogus", b"other"))
    assert resp.status_code == 403
    assert count(ImportRun) == 1


def test_the_import_page_uploads_and_shows_the_run(app, team):
    import io

    page, user = member_browser(app, team)
    resp = page.get(f"/cases/{team.case_id}/imports")
    assert resp.status_code == 200 and b'id="import-upload"' in resp.data
    assert b"Nothing imported yet" in resp.data
    resp = page.post(f"/cases/{team.case_id}/imports",
                     {"kind": "cdr", "file": (io.BytesIO(CDR), "calls.csv")},
                     content_type="multipart/form-data")
    assert resp.status_code == 302
    run = db.session.scalars(select(ImportRun)).one()
    assert resp.headers["Location"].endswith(f"/imports/{run.id}")
    shown = page.get(f"/imports/{run.id}")
    html = shown.data.decode()
    assert shown.status_code == 200 and 'data-testid="run-status">Done<' in html
    assert "callee &#39;bogus&#39;" in html or "callee 'bogus'" in html
    listing = page.get(f"/cases/{team.case_id}/imports").data.decode()
    assert "calls.csv" in listing and f"import-{run.id}" in listing
    assert run.created_by_id == user.id


def test_the_import_page_shows_a_refusal_with_its_status(app, team):
    import io

    page, _ = member_browser(app, team)
    resp = page.post(f"/cases/{team.case_id}/imports",
                     {"kind": "cdr", "file": (io.BytesIO(b"\x89PNG\r\n\x1a\n\x00"), "x.csv")},
                     content_type="multipart/form-data")
    assert resp.status_code == 415 and b"not CSV" in resp.data
    resp = page.post(f"/cases/{team.case_id}/imports",
                     {"kind": "cdr", "file": (io.BytesIO(b"a,b\n1,2\n"), "x.csv")},
                     content_type="multipart/form-data")
    assert resp.status_code == 422 and b"no column for caller" in resp.data
    assert count(ImportRun) == 0 and count(EvidenceItem) == 0


def test_the_mapping_page_saves_and_lists_mappings(app, team):
    page, user = member_browser(app, team)
    resp = page.post("/import-mappings", {
        "name": "Hotel register", "source_column": "Phone", "source_kind": "phone",
        "target_column": "Address", "target_kind": "address", "link_type": "STAYED_AT",
        "date_column": "Date", "shared": "1"})
    assert resp.status_code == 302
    mapping = db.session.scalars(select(ColumnMapping)).one()
    assert mapping.owner_id == user.id and mapping.agency_id == team.lead_agency.id
    listed = page.get("/import-mappings")
    assert b"Hotel register" in listed.data
    bad = page.post("/import-mappings", {"name": "", "source_column": "x",
                                         "source_kind": "phone", "target_column": "y",
                                         "target_kind": "phone", "link_type": "NOPE"})
    assert bad.status_code == 422 and b"link_type" in bad.data
    api = api_caller(app, team.investigator[0])  # same agency: sees the shared mapping
    assert [m["name"] for m in api.get("/api/v1/import-mappings").json] == ["Hotel register"]
    outsider = api_caller(app, team.outsider[0])
    assert outsider.get("/api/v1/import-mappings").json == []
    assert outsider.delete(f"/api/v1/import-mappings/{mapping.id}").status_code == 404
    assert page.post(f"/import-mappings/{mapping.id}/delete").status_code == 302
    assert count(ColumnMapping) == 0


def test_cli_import_with_progress_and_repeat(app, team, runner, tmp_path):
    path = tmp_path / "calls.csv"
    path.write_bytes(CDR)
    user = team.lead[0]
    result = runner.invoke(args=["graph", "import", str(team.case_id), str(path), "--kind",
                                 "cdr", "--as", user.username])
    assert result.exit_code == 0, result.output
    assert "done: 4 rows read, 3 loaded, 1 bad" in result.output
    assert "line 5:" in result.output
    again = runner.invoke(args=["graph", "import", str(team.case_id), str(path), "--kind",
                                "cdr", "--as", user.username])
    assert again.exit_code == 0 and "nothing new was created" in again.output
    outsider = runner.invoke(args=["graph", "import", str(team.case_id), str(path), "--kind",
                                   "cdr", "--as", team.outsider[0].username])
    assert outsider.exit_code != 0 and "not shared" in outsider.output.lower()
    bad = tmp_path / "x.csv"
    bad.write_bytes(b"\x00\x01\x02")
    refused = runner.invoke(args=["graph", "import", str(team.case_id), str(bad), "--kind",
                                  "cdr", "--as", user.username])
    assert refused.exit_code != 0 and "not CSV" in refused.output
    assert count(ImportRun) == 1
