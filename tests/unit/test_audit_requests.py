"""Every request to a protected endpoint leaves an audit record (invariant 4)."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

import taskforce.accounts
from taskforce.accounts.permissions import Actor, public, signed_in
from taskforce.audit import service
from taskforce.audit.models import AuditEvent
from taskforce.errors import Forbidden, NotFound
from taskforce.extensions import db

ANN = Actor(user_id=5, username="ann", agency_id=2, roles=frozenset({"investigator"}))


def act_as(monkeypatch, actor: Actor) -> None:
    """Skip signing in: the request gate gets this actor (its ip and agent are the request's)."""
    def load() -> Actor:
        from flask import request

        return Actor(**{**actor.__dict__, "ip": request.remote_addr,
                        "user_agent": request.user_agent.string})

    monkeypatch.setattr(taskforce.accounts, "load_actor", load)


def events() -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)))


@pytest.fixture()
def routes(app):
    """Test-only endpoints, registered before the first request."""
    @signed_in
    def note(case_id: int, note_id: int):
        return {"case": case_id, "note": note_id}

    @signed_in
    def audited(case_id: int):
        service.record(actor=taskforce.accounts.permissions.current_actor(), action="case.read",
                       object_type="case", object_id=case_id, case_id=case_id)
        db.session.commit()
        return "ok"

    @signed_in
    def refused_after_recording(case_id: int):
        service.record(actor=taskforce.accounts.permissions.current_actor(), action="case.update",
                       object_type="case", object_id=case_id, case_id=case_id)
        raise Forbidden("You are not on this case's team.")

    @signed_in
    def missing():
        raise NotFound("No such case.")

    @signed_in
    def crash():
        raise RuntimeError("boom")

    @public
    def open_page():
        return "hello"

    app.add_url_rule("/t/cases/<int:case_id>/notes/<int:note_id>", "t_note", note)
    app.add_url_rule("/t/cases/<int:case_id>/audited", "t_audited", audited)
    app.add_url_rule("/t/cases/<int:case_id>/refused", "t_refused", refused_after_recording,
                     methods=["GET", "POST"])
    app.add_url_rule("/t/missing", "t_missing", missing)
    app.add_url_rule("/t/crash", "t_crash", crash)
    app.add_url_rule("/t/open", "t_open", open_page)
    return app


def test_an_anonymous_page_request_is_recorded_as_denied(client):
    resp = client.get("/", headers={"User-Agent": "curious/1.0"})
    assert resp.status_code == 302  # sent to sign in
    [event] = events()
    assert event.action == "request.web.dashboard"
    assert (event.outcome, event.status_code) == ("denied", 302)
    assert event.user_id is None and event.username is None
    assert (event.ip, event.user_agent) == ("127.0.0.1", "curious/1.0")
    assert event.details == '{"method":"GET","path":"/"}'
    assert service.verify_chain().ok


def test_an_anonymous_api_call_is_recorded_as_denied(client):
    assert client.get("/api/v1/audit").status_code == 401
    [event] = events()
    assert (event.action, event.outcome, event.status_code) == (
        "request.audit_api.search", "denied", 401)


def test_a_role_refusal_is_recorded_with_the_actor(client, monkeypatch):
    act_as(monkeypatch, ANN)
    assert client.get("/audit", headers={"Accept": "application/json"}).status_code == 403
    [event] = events()
    assert (event.action, event.outcome, event.status_code) == ("request.audit.review", "denied", 403)
    assert (event.user_id, event.username, event.agency_id) == (5, "ann", 2)


def test_a_successful_read_is_recorded_with_its_object(routes, client, monkeypatch):
    act_as(monkeypatch, ANN)
    assert client.get("/t/cases/3/notes/7").status_code == 200
    [event] = events()
    assert (event.action, event.outcome, event.status_code) == ("request.t_note", "success", 200)
    assert (event.object_type, event.object_id, event.case_id) == ("note", "7", 3)
    assert (event.user_id, event.agency_id, event.ip) == (5, 2, "127.0.0.1")


def test_a_request_its_service_audited_is_not_recorded_twice(routes, client, monkeypatch):
    act_as(monkeypatch, ANN)
    assert client.get("/t/cases/3/audited").status_code == 200
    assert [e.action for e in events()] == ["case.read"]
    # The flag belongs to one request: the next one, unaudited by its service, is recorded.
    assert client.get("/t/cases/3/notes/1").status_code == 200
    assert [e.action for e in events()] == ["case.read", "request.t_note"]


def test_a_refusal_after_the_service_recorded_keeps_only_the_refusal(routes, client, monkeypatch):
    act_as(monkeypatch, ANN)
    resp = client.get("/t/cases/9/refused", headers={"Accept": "application/json"})
    assert resp.status_code == 403
    [event] = events()  # case.update went with the rolled-back transaction
    assert (event.action, event.outcome, event.status_code, event.case_id) == (
        "request.t_refused", "denied", 403, 9)
    assert service.verify_chain().ok


@pytest.mark.parametrize("url, outcome, status", [
    ("/t/missing", "failed", 404),
    ("/t/crash", "error", 500),
])
def test_failures_and_errors_are_recorded(routes, client, monkeypatch, url, outcome, status):
    act_as(monkeypatch, ANN)
    assert client.get(url, headers={"Accept": "application/json"}).status_code == status
    [event] = events()
    assert (event.outcome, event.status_code) == (outcome, status)


def test_public_and_unmatched_requests_are_not_recorded(routes, client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/t/open").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    assert events() == []


def test_x_forwarded_for_is_ignored_unless_behind_a_proxy(app, routes, client, monkeypatch):
    act_as(monkeypatch, ANN)
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}
    client.get("/t/cases/1/notes/1", headers=headers)
    app.config["TRUSTED_PROXIES"] = 1  # one proxy of ours appended the last address
    client.get("/t/cases/1/notes/1", headers=headers)
    assert [e.ip for e in events()] == ["127.0.0.1", "203.0.113.9"]


def test_a_read_that_cannot_be_audited_is_withheld(routes, client, monkeypatch):
    act_as(monkeypatch, ANN)

    def broken(**kw):
        raise RuntimeError("database gone")

    monkeypatch.setattr(service, "record_request", broken)
    resp = client.get("/t/cases/3/notes/7", headers={"Accept": "application/json"})
    assert resp.status_code == 503
    assert b'"note"' not in resp.data
