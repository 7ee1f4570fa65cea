"""Case pages and the /api/v1/cases API over HTTP: need to know on every route,
partner grants, lead workflow, bad input, audit, and the OpenAPI description."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from taskforce.audit.models import AuditEvent
from taskforce.extensions import db
from taskforce.investigations import service
from taskforce.investigations.models import Case, CaseMember, Lead, Note, PartnerGrant, Task
from tests.factories import make_agency
from tests.factories_investigations import (
    actor_for,
    api_caller,
    browser,
    ensure_registered,
    make_case,
    person,
)


@pytest.fixture(autouse=True)
def _registered(app):
    ensure_registered(app)


@pytest.fixture()
def agencies(app):
    return (make_agency(name="Springfield PD", ori="IL0160000"),
            make_agency(name="Capital City PD", ori="IL0180000"),
            make_agency(name="HSI Chicago", ori="ILHSI0000", level="federal"))


@pytest.fixture()
def world(app, agencies):
    """A case with a member, a lead, a task, a note and a grant to a third agency."""
    lead_agency, _, third = agencies
    lead_user, lead = person(agency=lead_agency)
    analyst, _ = person(agency=lead_agency, roles=("analyst",))
    cid = make_case(lead, title="Operation Nightjar")
    member = service.add_member(actor=lead, case_id=cid, user_id=analyst.id, case_role="analyst")
    item = service.add_lead(actor=lead, case_id=cid, title="Tip", source="tip_line")
    task = service.add_task(actor=lead, case_id=cid, title="Canvass")
    service.add_note(actor=lead, case_id=cid, body="First note")
    grant = service.grant_partner(actor=lead, case_id=cid, agency_id=third.id, access="read")
    return {"case_id": cid, "lead_user": lead_user, "lead": lead, "member_id": member.id,
            "lead_id": item.id, "task_id": task.id, "grant_id": grant.id,
            "agencies": agencies}


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def case_routes(app):
    """(method, rule) for every page and API route under one case."""
    for rule in app.url_map.iter_rules():
        if not re.match(r"^(/api/v1)?/cases/<int:case_id>", rule.rule):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, rule.rule


def fill(rule: str, ids: dict) -> str:
    return re.sub(r"<int:(\w+)>", lambda m: str(ids[m.group(1)]), rule)


def valid_payload(rule: str, user_id: int, agency_id: int) -> dict:
    """A well-formed body for each kind of change, so only access can refuse it."""
    last = rule.rstrip("/").split("/")[-1]
    return {
        "status": {"status": "active", "reason": "probe"},
        "members": {"user_id": user_id, "username": "x", "case_role": "analyst"},
        "lead": {"user_id": user_id},
        "partners": {"agency_id": agency_id, "access": "contribute"},
        "leads": {"title": "probe", "source": "patrol"},
        "assign": {"assignee_id": user_id},
        "close": {"outcome": "duplicate"},
        "tasks": {"title": "probe"},
        "notes": {"body": "probe"},
        "physical": {"description": "probe", "storage_location": "probe"},
        "survivor-releases": {"entity_id": 1, "reason": "probe"},
        "legal-hold": {"reason": "probe"},
        "clear": {"reason": "probe"},
        "packages": {"item_ids": [1], "title": "probe"},
        "merges": {"keep_id": 1, "absorb_id": 2, "pair": "1,2", "reason": "probe"},
        "undo": {"merge_id": 1},
    }.get(last, {})


# Need to know on every route -------------------------------------------------------

def test_outsider_gets_404_from_every_case_route_and_sees_no_case(app, world):
    routes = list(case_routes(app))
    assert len(routes) >= 30, routes  # pages and API both discovered
    outsider_user, _ = person(agency=world["agencies"][1], roles=("investigator", "supervisor"))
    api = api_caller(app, outsider_user)
    page, _ = browser(app, ("investigator", "supervisor"), agency=world["agencies"][1])
    before = {m: count(m) for m in (Note, Lead, Task, CaseMember, PartnerGrant)}
    answered = {}
    other = world["agencies"][1].id
    for method, rule in routes:
        url = fill(rule, world)
        if method == "POST" and rule.endswith("/imports"):  # its options are in the query
            url += "?kind=cdr"
        if rule.endswith("/search"):
            url += "?q=probe"
        body = valid_payload(rule, outsider_user.id, other) if method != "GET" else None
        if rule.startswith("/api/"):
            if body is not None and "members" in rule:
                body.pop("username", None)
            resp = api.open(url, method, json=body)
            assert resp.json["error"]["code"] == "not_found", (method, url, resp.json)
        else:
            resp = page.get(url) if method == "GET" else page.post(url, body)
        answered[(method, url)] = resp.status_code
    assert {k: v for k, v in answered.items() if v != 404} == {}
    assert {m: count(m) for m in before} == before
    assert db.session.get(PartnerGrant, world["grant_id"]).revoked_at is None
    assert api.get("/api/v1/cases").json["items"] == []
    html = page.get("/cases").get_data(as_text=True)
    assert "Operation Nightjar" not in html and "IL0160000" not in html


def test_unknown_case_answers_like_a_hidden_one(app, world):
    user, _ = person(agency=world["agencies"][1])
    api = api_caller(app, user)
    hidden = api.get(f"/api/v1/cases/{world['case_id']}")
    missing = api.get("/api/v1/cases/987654")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json == missing.json


def test_huge_ids_are_404_or_422_never_500(app, world):
    api = api_caller(app, world["lead_user"])
    cid = world["case_id"]
    assert api.get(f"/api/v1/cases/{2**40}").status_code == 404
    assert api.post(f"/api/v1/cases/{cid}/tasks/{2**40}/done").status_code == 404
    resp = api.post(f"/api/v1/cases/{cid}/partners", {"agency_id": 2**40, "access": "read"})
    assert resp.status_code == 422 and "agency_id" in resp.json["error"]["fields"]


def test_partner_read_grant_reads_but_cannot_add_then_contributes_then_is_revoked(app, world):
    cid, third = world["case_id"], world["agencies"][2]
    partner_user, _ = person(agency=third, roles=("investigator",))
    api = api_caller(app, partner_user)
    resp = api.get(f"/api/v1/cases/{cid}")
    assert resp.status_code == 200
    assert resp.json["your_access"] == "read"
    assert resp.json["number"].startswith("IL0160000-")
    assert [n["body"] for n in api.get(f"/api/v1/cases/{cid}/notes").json] == ["First note"]
    assert cid in [c["id"] for c in api.get("/api/v1/cases").json["items"]]

    resp = api.post(f"/api/v1/cases/{cid}/notes", {"body": "Partner note"})
    assert resp.status_code == 403 and resp.json["error"]["code"] == "forbidden"
    assert api.post(f"/api/v1/cases/{cid}/leads",
                    {"title": "x", "source": "patrol"}).status_code == 403
    assert count(Note) == 1

    lead_api = api_caller(app, world["lead_user"])
    resp = lead_api.post(f"/api/v1/cases/{cid}/partners",
                         {"agency_id": third.id, "access": "contribute"})
    assert resp.status_code == 201
    grant_id = resp.json["id"]
    assert resp.json["granted_by"]["username"] == world["lead_user"].username
    assert api.post(f"/api/v1/cases/{cid}/notes", {"body": "Partner note"}).status_code == 201

    resp = lead_api.delete(f"/api/v1/cases/{cid}/partners/{grant_id}")
    assert resp.status_code == 200 and resp.json["revoked_at"]
    assert api.get(f"/api/v1/cases/{cid}").status_code == 404
    assert api.get("/api/v1/cases").json["items"] == []


@pytest.mark.parametrize("who,agency_index,expected", [
    (("supervisor",), 0, 200),  # supervisor of the lead agency
    (("supervisor",), 1, 404),  # supervisor of another agency
    (("admin",), 0, 404),  # admin of the lead agency, not on the team
    (("investigator",), 0, 404),  # same agency, not on the team
    (("coordinator",), 1, 404),
])
def test_who_sees_the_case(app, world, who, agency_index, expected):
    user, _ = person(agency=world["agencies"][agency_index], roles=who)
    api = api_caller(app, user)
    assert api.get(f"/api/v1/cases/{world['case_id']}").status_code == expected
    listed = [c["id"] for c in api.get("/api/v1/cases").json["items"]]
    assert (world["case_id"] in listed) == (expected == 200)
    timeline = api.get(f"/api/v1/cases/{world['case_id']}/timeline")
    assert timeline.status_code == expected


def test_lead_agency_supervisor_manages_the_team(app, world):
    sup, _ = person(agency=world["agencies"][0], roles=("supervisor",))
    newcomer, _ = person(agency=world["agencies"][1], roles=("investigator",))
    api = api_caller(app, sup)
    cid = world["case_id"]
    resp = api.post(f"/api/v1/cases/{cid}/members",
                    {"user_id": newcomer.id, "case_role": "investigator"})
    assert resp.status_code == 201, resp.json
    assert api_caller(app, newcomer).get(f"/api/v1/cases/{cid}").json["your_access"] == \
        "contribute"
    resp = api.post(f"/api/v1/cases/{cid}/lead", {"user_id": newcomer.id})
    assert resp.status_code == 200
    assert resp.json["lead_investigator"]["id"] == newcomer.id


def test_a_member_cannot_manage_the_team(app, world):
    analyst = db.session.get(CaseMember, world["member_id"]).user
    api = api_caller(app, analyst)
    cid = world["case_id"]
    assert api.get(f"/api/v1/cases/{cid}").json["your_access"] == "contribute"
    resp = api.post(f"/api/v1/cases/{cid}/status", {"status": "active", "reason": "go"})
    assert resp.status_code == 403
    assert api.delete(f"/api/v1/cases/{cid}/partners/{world['grant_id']}").status_code == 403
    assert api.post(f"/api/v1/cases/{cid}/notes", {"body": "analysis"}).status_code == 201


# API: opening, status, leads, bad input ---------------------------------------------------

def test_open_case_through_the_api(app, agencies):
    user, _ = person(agency=agencies[0], roles=("investigator",))
    api = api_caller(app, user)
    resp = api.post("/api/v1/cases", {"title": "Operation Heron",
                                      "offences": ["labor_trafficking", "related_offence"]})
    assert resp.status_code == 201, resp.json
    body = resp.json
    assert re.fullmatch(r"IL0160000-\d{4}-0001", body["number"])
    assert body["offences"] == ["labor_trafficking", "related_offence"]
    assert body["agency"]["ori"] == "IL0160000"
    assert body["lead_investigator"]["id"] == user.id
    assert [(m["user"]["id"], m["case_role"]) for m in body["team"]] == [(user.id, "lead")]
    assert body["status_history"][0]["to_status"] == "open"
    assert body["your_access"] == "manage"


@pytest.mark.parametrize("role", ["analyst", "coordinator", "prosecutor", "admin"])
def test_other_roles_cannot_open_cases(app, agencies, role):
    user, _ = person(agency=agencies[0], roles=(role,))
    resp = api_caller(app, user).post("/api/v1/cases", {"title": "x", "offences": ["sex_trafficking"]})
    assert resp.status_code == 403
    assert count(Case) == 0


@pytest.mark.parametrize("payload,fields", [
    ({"title": "", "offences": ["smuggling"]}, {"title", "offences"}),
    ({"offences": []}, {"title", "offences"}),
    ({"title": "x" * 201, "offences": ["sex_trafficking"], "colour": "red"}, {"title", "colour"}),
])
def test_bad_case_input_is_422_with_fields_and_writes_nothing(app, agencies, payload, fields):
    user, _ = person(agency=agencies[0])
    resp = api_caller(app, user).post("/api/v1/cases", payload)
    assert resp.status_code == 422
    assert set(resp.json["error"]["fields"]) == fields
    assert count(Case) == 0


def test_status_change_and_history_through_the_api(app, world):
    api = api_caller(app, world["lead_user"])
    cid = world["case_id"]
    resp = api.post(f"/api/v1/cases/{cid}/status", {"status": "active", "reason": "Go"})
    assert resp.status_code == 201
    assert (resp.json["from_status"], resp.json["to_status"]) == ("open", "active")
    resp = api.post(f"/api/v1/cases/{cid}/status", {"status": "open", "reason": "Back"})
    assert resp.status_code == 422 and "status" in resp.json["error"]["fields"]
    resp = api.post(f"/api/v1/cases/{cid}/status", {"status": "closed"})
    assert resp.status_code == 422 and set(resp.json["error"]["fields"]) == {"reason"}
    history = api.get(f"/api/v1/cases/{cid}").json["status_history"]
    assert [(h["from_status"], h["to_status"], h["reason"]) for h in history] == [
        (None, "open", "Case opened."), ("open", "active", "Go")]
    assert history[1]["changed_by"]["username"] == world["lead_user"].username


def test_lead_workflow_through_the_api(app, world):
    api = api_caller(app, world["lead_user"])
    cid, me = world["case_id"], world["lead_user"].id
    resp = api.post(f"/api/v1/cases/{cid}/leads",
                    {"title": "CyberTip 991", "source": "ncmec_cybertip",
                     "source_reference": "991", "received_on": "2026-01-04"})
    assert resp.status_code == 201 and resp.json["status"] == "new"
    lid = resp.json["id"]
    base = f"/api/v1/cases/{cid}/leads/{lid}"
    resp = api.post(f"{base}/worked")
    assert resp.status_code == 422 and "status" in resp.json["error"]["fields"]
    resp = api.post(f"{base}/close", {"outcome": "duplicate"})
    assert resp.status_code == 422 and "status" in resp.json["error"]["fields"]
    assert api.post(f"{base}/assign", {"assignee_id": me}).json["status"] == "assigned"
    assert api.post(f"{base}/worked").json["status"] == "worked"
    resp = api.post(f"{base}/close", {"outcome": "solved"})
    assert resp.status_code == 422 and "outcome" in resp.json["error"]["fields"]
    resp = api.post(f"{base}/close", {"outcome": "substantiated", "outcome_notes": "ok"})
    assert resp.status_code == 200
    assert (resp.json["status"], resp.json["outcome"]) == ("closed", "substantiated")
    assert api.post(f"{base}/assign", {"assignee_id": me}).status_code == 422
    statuses = [x["status"] for x in api.get(f"/api/v1/cases/{cid}/leads?status=closed").json]
    assert statuses == ["closed"]
    assert api.get(f"/api/v1/cases/{cid}/leads?status=bogus").status_code == 422


def test_tasks_notes_and_timeline_through_the_api(app, world):
    api = api_caller(app, world["lead_user"])
    cid = world["case_id"]
    resp = api.post(f"/api/v1/cases/{cid}/tasks", {"title": "Warrant", "due_on": "2026-05-01",
                                                   "assignee_id": world["lead_user"].id})
    assert resp.status_code == 201 and resp.json["done"] is False
    tid = resp.json["id"]
    assert api.post(f"/api/v1/cases/{cid}/tasks/{tid}/done").json["done"] is True
    assert api.post(f"/api/v1/cases/{cid}/tasks/{tid}/done").status_code == 409
    resp = api.post(f"/api/v1/cases/{cid}/notes", {"body": "Dated", "event_on": "2020-02-02"})
    assert resp.status_code == 201 and resp.json["event_on"] == "2020-02-02"
    resp = api.post(f"/api/v1/cases/{cid}/notes", {"body": "", "event_on": "yesterday"})
    assert resp.status_code == 422
    assert set(resp.json["error"]["fields"]) == {"body", "event_on"}
    events = api.get(f"/api/v1/cases/{cid}/timeline").json["events"]
    assert events[0]["kind"] == "note" and events[0]["summary"] == "Dated"
    assert events[0]["all_day"] is True
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    assert {"status", "team", "partner", "lead", "task", "note"} <= {e["kind"] for e in events}


def test_read_only_token_cannot_change_a_case(app, world):
    from taskforce.accounts import service as accounts

    _, raw = accounts.create_token(actor=actor_for(world["lead_user"]), name="ro",
                                   scope="read", expires_in_days=1)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {raw}"}
    assert client.get(f"/api/v1/cases/{world['case_id']}", headers=headers).status_code == 200
    resp = client.post(f"/api/v1/cases/{world['case_id']}/notes", json={"body": "x"},
                       headers=headers)
    assert resp.status_code == 403


# Audit over HTTP ----------------------------------------------------------------------------

def test_api_reads_and_writes_leave_audit_records(app, world):
    api = api_caller(app, world["lead_user"])
    cid = world["case_id"]
    api.get(f"/api/v1/cases/{cid}")
    api.post(f"/api/v1/cases/{cid}/notes", {"body": "audited"})
    outsider, _ = person(agency=world["agencies"][1])
    api_caller(app, outsider).get(f"/api/v1/cases/{cid}")

    def rows(**where):
        q = select(AuditEvent)
        for k, v in where.items():
            q = q.where(getattr(AuditEvent, k) == v)
        return list(db.session.scalars(q))

    assert rows(action="case.read", case_id=cid, user_id=world["lead_user"].id)
    assert rows(action="note.add", case_id=cid, user_id=world["lead_user"].id)
    denied = rows(user_id=outsider.id, outcome="denied")
    assert denied and all(r.case_id in (cid, None) for r in denied)


# Pages ----------------------------------------------------------------------------------------

def test_open_a_case_with_the_form_and_work_it_on_its_page(app, agencies):
    page, user = browser(app, ("investigator",), agency=agencies[0])
    assert page.get("/cases/new").status_code == 200
    resp = page.post("/cases/new", {"title": "Operation Wren",
                                    "offences": ["sex_trafficking", "labor_trafficking"]})
    assert resp.status_code == 302
    cid = int(resp.headers["Location"].rstrip("/").split("/")[-1])
    html = page.get(f"/cases/{cid}").get_data(as_text=True)
    number = db.session.get(Case, cid).number
    assert number in html and "Operation Wren" in html
    for section in ("status", "team", "partners", "leads", "tasks", "notes", "timeline"):
        assert f'id="{section}"' in html
    assert "style=" not in html and "<script>" not in html  # CSP: no inline style or script

    assert page.post(f"/cases/{cid}/notes", {"body": "Met the hotline caseworker",
                                             "event_on": "2026-01-02"}).status_code == 302
    assert page.post(f"/cases/{cid}/leads", {"title": "Motel tip", "source": "patrol",
                                             "assignee_id": str(user.id)}).status_code == 302
    assert page.post(f"/cases/{cid}/tasks", {"title": "Interview"}).status_code == 302
    assert page.post(f"/cases/{cid}/status", {"status": "active",
                                              "reason": "Enough to proceed"}).status_code == 302
    html = page.get(f"/cases/{cid}").get_data(as_text=True)
    for text in ("Met the hotline caseworker", "Motel tip", "Interview", "Enough to proceed"):
        assert text in html
    assert db.session.scalar(select(Lead.status).where(Lead.case_id == cid)) == "assigned"


def test_bad_form_input_shows_the_page_again_with_422_and_writes_nothing(app, agencies):
    page, _ = browser(app, ("investigator",), agency=agencies[0])
    resp = page.post("/cases/new", {"title": "", "offences": []})
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "title" in html and "offences" in html
    assert count(Case) == 0
    cid = int(page.post("/cases/new", {"title": "T", "offences": ["related_offence"]})
              .headers["Location"].rstrip("/").split("/")[-1])
    resp = page.post(f"/cases/{cid}/leads", {"title": "", "source": "carrier pigeon"})
    assert resp.status_code == 422
    assert 'data-testid="form-error"' in resp.get_data(as_text=True)
    assert count(Lead) == 0


def test_case_list_page_filters(app, agencies):
    page, user = browser(app, ("investigator",), agency=agencies[0])
    actor = actor_for(user)
    a = make_case(actor, title="Alpha harbor", offences=["sex_trafficking"])
    b = make_case(actor, title="Bravo farms", offences=["labor_trafficking"])
    service.change_status(actor=actor, case_id=b, status="suspended", reason="wait")
    html = page.get("/cases").get_data(as_text=True)
    assert "Alpha harbor" in html and "Bravo farms" in html
    html = page.get("/cases?status=suspended").get_data(as_text=True)
    assert "Bravo farms" in html and "Alpha harbor" not in html
    html = page.get("/cases?offence=sex_trafficking").get_data(as_text=True)
    assert "Alpha harbor" in html and "Bravo farms" not in html
    assert page.get("/cases?status=nonsense").status_code == 422
    assert a != b


def test_a_read_only_partner_sees_the_page_without_forms(app, world):
    page, _ = browser(app, ("investigator",), agency=world["agencies"][2])
    resp = page.get(f"/cases/{world['case_id']}")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "Your access: read." in html
    assert f'action="/cases/{world["case_id"]}/notes"' not in html
    assert page.post(f"/cases/{world['case_id']}/notes", {"body": "x"}).status_code == 403


def test_openapi_documents_the_case_api(app, client):
    spec = client.get("/api/openapi.json").json
    for path in ("/api/v1/cases", "/api/v1/cases/{case_id}", "/api/v1/cases/{case_id}/timeline",
                 "/api/v1/cases/{case_id}/leads/{lead_id}/close"):
        assert path in spec["paths"], path
    post = spec["paths"]["/api/v1/cases"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/CaseIn")
    assert "StatusChangeOut1" not in spec["components"]["schemas"]
