"""Reading the trail: who sees what, filters, pages, the CSV export and the JSON API."""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

import taskforce.accounts
from taskforce.accounts.permissions import Actor
from taskforce.audit import service
from taskforce.audit.models import AuditEvent
from taskforce.audit.service import EXPORT_COLUMNS, AuditFilters
from taskforce.errors import Forbidden
from taskforce.extensions import db
from tests.factories import login, make_agency, make_user

ADMIN = Actor(user_id=1, username="root", agency_id=1, roles=frozenset({"admin"}))
SUPERVISOR_1 = Actor(user_id=2, username="sue", agency_id=1, roles=frozenset({"supervisor"}))
SAM = Actor(user_id=11, username="sam", agency_id=1, roles=frozenset({"investigator"}))
TESS = Actor(user_id=22, username="tess", agency_id=2, roles=frozenset({"investigator"}))
STRANGER = Actor(ip="198.51.100.7")


def act_as(monkeypatch, actor: Actor) -> None:
    monkeypatch.setattr(taskforce.accounts, "load_actor", lambda: actor)


def seed() -> None:
    """Agency 1: sam reads case 100 twice and is refused case 200. Agency 2: tess
    reads case 200 and exports it. A stranger fails to sign in."""
    service.record_now(actor=SAM, action="case.read", case_id=100, object_type="case", object_id=100)
    service.record_now(actor=SAM, action="case.read", case_id=100, object_type="case", object_id=100)
    service.record_now(actor=SAM, action="case.read", outcome="denied", case_id=200)
    service.record_now(actor=TESS, action="case.read", case_id=200)
    service.record_now(actor=TESS, action="case_export.create", case_id=200)
    service.record_now(actor=STRANGER, action="login.failure", outcome="denied")


def actions(page) -> list[str]:
    return [e.action for e in page.items]


# --- who sees what ------------------------------------------------------------------------

def test_an_admin_sees_every_agency(app):
    seed()
    page = service.review(actor=ADMIN, filters=AuditFilters())
    assert {e.agency_id for e in page.items} == {1, 2, None}
    assert len(page.items) == 7  # the six, and this very look


def test_a_supervisor_sees_only_their_own_agency(app):
    seed()
    page = service.review(actor=SUPERVISOR_1, filters=AuditFilters())
    assert {e.agency_id for e in page.items} == {1}
    assert sorted(e.username for e in page.items) == ["sam", "sam", "sam", "sue"]
    # Asking for another agency's user or case finds nothing rather than leaking.
    assert service.review(actor=SUPERVISOR_1, filters=AuditFilters(username="tess")).items == []
    rows = list(service.export(actor=SUPERVISOR_1, filters=AuditFilters(case_id=200)))
    assert [r[EXPORT_COLUMNS.index("username")] for r in rows[1:]] == ["sam"]


@pytest.mark.parametrize("actor", [SAM, STRANGER, Actor(user_id=9, username="x", agency_id=1,
                                                        roles=frozenset({"coordinator"}))])
def test_everyone_else_is_refused(app, actor):
    seed()
    with pytest.raises(Forbidden):
        service.review(actor=actor, filters=AuditFilters())
    with pytest.raises(Forbidden):
        service.export(actor=actor, filters=AuditFilters())


def test_a_supervisor_without_an_agency_sees_nothing(app):
    seed()
    nowhere = Actor(user_id=3, username="floater", roles=frozenset({"supervisor"}))
    assert service.review(actor=nowhere, filters=AuditFilters()).items == []


# --- filters and pages --------------------------------------------------------------------

@pytest.mark.parametrize("filters, expected", [
    (AuditFilters(username="tess"), ["case_export.create", "case.read"]),
    (AuditFilters(case_id=100), ["case.read", "case.read"]),
    (AuditFilters(action="case."), ["case.read", "case.read", "case.read", "case.read"]),
    (AuditFilters(action="case_"), ["case_export.create"]),  # '_' is no wildcard
    (AuditFilters(action="login"), ["login.failure"]),
    (AuditFilters(outcome="denied", username="sam"), ["case.read"]),
    (AuditFilters(date_to=date.today() - timedelta(days=1)), []),
])
def test_filters(app, filters, expected):
    seed()
    page = service.review(actor=ADMIN, filters=filters)
    assert actions(page) == expected


def test_date_range_is_inclusive_in_utc_days(app):
    seed()
    from datetime import datetime

    today = datetime.now(UTC).date()
    page = service.review(actor=ADMIN, filters=AuditFilters(date_from=today, date_to=today,
                                                             action="case."))
    assert len(page.items) == 4
    assert service.review(actor=ADMIN, filters=AuditFilters(
        date_from=today + timedelta(days=1))).items == []


def test_pages_are_newest_first(app):
    seed()
    first = service.review(actor=ADMIN, filters=AuditFilters(), per_page=3)
    assert [e.seq for e in first.items] == [7, 6, 5]  # 7 is this look itself
    assert first.has_next and not first.has_prev
    last = service.review(actor=ADMIN, filters=AuditFilters(), page=3, per_page=3)
    # 8 events now (two looks): pages 8-6, 5-3, 2-1
    assert [e.seq for e in last.items] == [2, 1] and not last.has_next and last.has_prev


def test_looking_and_exporting_are_audited(app):
    seed()
    service.review(actor=SUPERVISOR_1, filters=AuditFilters(case_id=100), page=2)
    list(service.export(actor=SUPERVISOR_1, filters=AuditFilters(outcome="denied")))
    looks = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action.like("audit.%"))
                               .order_by(AuditEvent.seq)).all()
    assert [(e.action, e.username, e.agency_id) for e in looks] == [
        ("audit.review", "sue", 1), ("audit.export", "sue", 1)]
    assert json.loads(looks[0].details) == {"filters": {"case_id": "100"}, "page": 2}
    assert json.loads(looks[1].details) == {"filters": {"outcome": "denied"}}
    assert service.verify_chain().ok


def test_export_reads_in_batches(app):
    seed()
    rows = list(service.export(actor=ADMIN, filters=AuditFilters(), batch_size=2))
    assert rows[0] == EXPORT_COLUMNS
    assert [r[0] for r in rows[1:]] == [7, 6, 5, 4, 3, 2, 1]


# --- over HTTP ----------------------------------------------------------------------------

def test_the_review_page(client, monkeypatch):
    seed()
    act_as(monkeypatch, ADMIN)
    resp = client.get("/audit?outcome=denied&username=&case_id=")  # blank fields: no filter
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert 'class="filters"' in html and 'method="get"' in html
    assert html.count('class="outcome-denied"') == 2
    assert "outcome-success" not in html
    assert "<script>" not in html and " style=" not in html and "<style" not in html  # CSP
    assert "/audit/export.csv?outcome=denied" in html
    # The page was audited by its service, once, and not again by the request hook.
    last = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert (last.action, last.seq) == ("audit.review", 7)


def test_the_review_page_refuses_a_bad_date(client, monkeypatch):
    act_as(monkeypatch, ADMIN)
    resp = client.get("/audit?date_from=31/12/2024")
    assert resp.status_code == 422
    assert "YYYY-MM-DD" in resp.get_data(as_text=True)


def test_csv_export(client, monkeypatch):
    seed()
    act_as(monkeypatch, ADMIN)
    resp = client.get("/audit/export.csv?outcome=denied")
    assert resp.status_code == 200
    assert resp.mimetype == "text/csv"
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="audit-')
    rows = list(csv.reader(io.StringIO(resp.get_data(as_text=True))))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    body = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert [(r["username"], r["action"], r["outcome"]) for r in body] == [
        ("", "login.failure", "denied"), ("sam", "case.read", "denied")]
    assert body[0]["ip"] == "198.51.100.7" and body[1]["case_id"] == "200"
    assert len(body[0]["hash"]) == 64


def test_csv_cells_a_spreadsheet_would_run_are_defused(client, monkeypatch):
    service.record_now(actor=Actor(username="=HYPERLINK(1)", user_agent="@evil"),
                       action="login.failure", outcome="denied")
    act_as(monkeypatch, ADMIN)
    rows = list(csv.reader(io.StringIO(client.get("/audit/export.csv?action=login")
                                       .get_data(as_text=True))))
    row = dict(zip(rows[0], rows[1]))
    assert row["username"] == "'=HYPERLINK(1)" and row["user_agent"] == "'@evil"


def test_the_api(client, monkeypatch):
    seed()
    act_as(monkeypatch, SUPERVISOR_1)
    resp = client.get("/api/v1/audit?case_id=100&per_page=1")
    assert resp.status_code == 200
    body = resp.json
    assert (body["page"], body["per_page"], body["has_next"]) == (1, 1, True)
    [item] = body["items"]
    assert (item["action"], item["case_id"], item["agency_id"]) == ("case.read", 100, 1)
    assert item["at"].endswith("Z") and len(item["hash"]) == 64


@pytest.mark.parametrize("query, field", [
    ("date_from=yesterday", "date_from"),
    ("case_id=abc", "case_id"),
    ("outcome=maybe", "outcome"),
    ("date_from=2025-02-01&date_to=2025-01-01", "date_to"),
    ("per_page=100000", "per_page"),
])
def test_the_api_refuses_bad_filters_clearly(client, monkeypatch, query, field):
    act_as(monkeypatch, ADMIN)
    resp = client.get(f"/api/v1/audit?{query}")
    assert resp.status_code == 422
    err = resp.json["error"]
    assert err["code"] == "invalid" and field in err["message"]
    assert field in err["fields"]


def test_the_api_refuses_an_investigator_and_records_it(client, monkeypatch):
    act_as(monkeypatch, SAM)
    assert client.get("/api/v1/audit").status_code == 403
    last = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert (last.action, last.outcome, last.username) == ("request.audit_api.search", "denied", "sam")


def test_a_signed_in_supervisor_sees_only_their_agency(app, client):
    """End to end with real accounts: sign in through the forms, read through the API."""
    home, other = make_agency(), make_agency()
    boss, password, secret = make_user(agency=home, roles=["supervisor"])
    mate, _, _ = make_user(agency=home, roles=["investigator"])
    outsider, _, _ = make_user(agency=other, roles=["investigator"])
    service.record_now(actor=Actor.for_user(mate), action="case.read", case_id=1)
    service.record_now(actor=Actor.for_user(outsider), action="case.read", case_id=2)
    login(client, boss.username, password, secret)

    items = client.get("/api/v1/audit?per_page=200").json["items"]
    assert items and {i["agency_id"] for i in items} == {home.id}
    assert {i["username"] for i in items} >= {boss.username, mate.username}
    assert outsider.username not in {i["username"] for i in items}

    resp = client.get("/audit")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert mate.username in html and outsider.username not in html


def test_the_pager_keeps_filters_and_page_size(client, monkeypatch):
    seed()
    act_as(monkeypatch, ADMIN)
    html = client.get("/audit?per_page=2&action=case.").get_data(as_text=True)
    older = re.search(r'href="([^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    assert parse_qs(urlsplit(older).query) == {"page": ["2"], "per_page": ["2"],
                                                "action": ["case."]}
    assert client.get(older).status_code == 200
