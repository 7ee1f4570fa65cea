"""The JSON API: bearer tokens, scopes, the one error body, conflicts, agency scoping."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from taskforce.accounts import service
from taskforce.accounts.models import Agency, ApiToken, utcnow
from taskforce.accounts.permissions import Actor
from taskforce.errors import Locked, Unauthorized
from taskforce.extensions import db
from tests.factories import csrf_from, login, make_agency, make_user, post_form


def token_for(user, scope: str = "write", days: int = 30) -> str:
    _, raw = service.create_token(actor=Actor.for_user(user), name=f"{scope} script",
                                  scope=scope, expires_in_days=days)
    return raw


def bearer(raw: str) -> dict:
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture()
def admin(app):
    user, _, _ = make_user(agency=make_agency(), roles=["admin"])
    return user


def test_a_token_signs_the_caller_in(app, client, admin):
    resp = client.get("/api/v1/me", headers=bearer(token_for(admin, "read")))
    assert resp.status_code == 200
    assert resp.json["username"] == admin.username
    assert resp.json["roles"] == ["admin"] and resp.json["token_scope"] == "read"
    assert resp.json["agency"]["id"] == admin.agency_id


def test_a_write_token_needs_no_csrf(app, client, admin):
    resp = client.post("/api/v1/agencies", headers=bearer(token_for(admin)),
                       json={"name": "Lakeport Police Department", "level": "local",
                             "ori": "oh0480500"})
    assert resp.status_code == 201
    assert resp.json["ori"] == "OH0480500" and resp.json["active"] is True


def test_a_read_token_is_refused_on_writes(app, client, admin):
    resp = client.post("/api/v1/agencies", headers=bearer(token_for(admin, "read")),
                       json={"name": "Lakeport PD", "level": "local", "ori": "OH0480500"})
    assert resp.status_code == 403
    assert resp.json["error"]["message"] == "This API token is read-only."
    assert db.session.scalar(select(func.count(Agency.id)).where(Agency.ori == "OH0480500")) == 0


def test_revoked_expired_unknown_and_malformed_tokens_get_401(app, client, admin):
    revoked = token_for(admin)
    token_id = db.session.scalar(select(ApiToken.id).order_by(ApiToken.id.desc()))
    service.revoke_token(actor=Actor.for_user(admin), token_id=token_id)
    expired = token_for(admin)
    row = db.session.scalar(select(ApiToken).order_by(ApiToken.id.desc()))
    row.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    for raw, words in [(revoked, "revoked"), (expired, "expired"),
                       ("tf_0123abcd_" + "A" * 43, "not valid"), ("hunter2", "malformed")]:
        resp = client.get("/api/v1/me", headers=bearer(raw))
        assert resp.status_code == 401, raw
        assert resp.json["error"]["code"] == "unauthorized"
        assert words in resp.json["error"]["message"]


def test_other_authorization_schemes_are_refused(app, client):
    resp = client.get("/api/v1/me", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert resp.status_code == 401 and "Bearer" in resp.json["error"]["message"]


def test_a_deactivated_users_token_stops_working(app, client, admin):
    user, _, _ = make_user()
    raw = token_for(user, "read")
    assert client.get("/api/v1/me", headers=bearer(raw)).status_code == 200
    service.deactivate_user(actor=Actor.for_user(admin), user_id=user.id)
    assert client.get("/api/v1/me", headers=bearer(raw)).status_code == 401


def test_validation_errors_are_422_in_the_one_body(app, client, admin):
    resp = client.post("/api/v1/agencies", headers=bearer(token_for(admin)),
                       json={"name": "", "level": "city"})
    assert resp.status_code == 422
    err = resp.json["error"]
    assert err["code"] == "invalid" and err["message"]
    assert {"name", "level", "ori"} <= set(err["fields"])


def test_service_rules_are_422_in_the_same_body(app, client, admin):
    resp = client.post("/api/v1/agencies", headers=bearer(token_for(admin)),
                       json={"name": "Lakeport PD", "level": "local", "ori": "OH-12"})
    assert resp.status_code == 422
    assert resp.json["error"]["code"] == "invalid" and "ori" in resp.json["error"]["fields"]


def test_a_duplicate_agency_is_409_and_nothing_is_written(app, client, admin):
    headers = bearer(token_for(admin))
    body = {"name": "Lakeport Police Department", "level": "local", "ori": "OH0480500"}
    assert client.post("/api/v1/agencies", headers=headers, json=body).status_code == 201
    before = db.session.scalar(select(func.count(Agency.id)))
    resp = client.post("/api/v1/agencies", headers=headers, json=dict(body, ori="OH0480599"))
    assert resp.status_code == 409 and resp.json["error"]["code"] == "conflict"
    assert db.session.scalar(select(func.count(Agency.id))) == before


def test_agency_update_through_the_api(app, client, admin):
    agency = make_agency(name="Old Name PD")
    resp = client.patch(f"/api/v1/agencies/{agency.id}", headers=bearer(token_for(admin)),
                        json={"level": "state", "active": False})
    assert resp.status_code == 200 and resp.json["level"] == "state"
    assert resp.json["active"] is False


def test_user_administration_through_the_api(app, client, admin):
    headers = bearer(token_for(admin))
    agency = make_agency()
    resp = client.post("/api/v1/users", headers=headers, json={
        "username": "mreyes", "full_name": "Maria Reyes", "email": "mreyes@lakeport.gov",
        "agency_id": agency.id, "roles": ["investigator"]})
    assert resp.status_code == 201
    user_id, temporary = resp.json["user"]["id"], resp.json["temporary_password"]
    assert temporary and resp.json["user"]["roles"] == ["investigator"]
    again = client.post("/api/v1/users", headers=headers, json={
        "username": "MReyes", "full_name": "M Reyes", "email": "m@lakeport.gov",
        "agency_id": agency.id, "roles": ["analyst"]})
    assert again.status_code == 409
    resp = client.put(f"/api/v1/users/{user_id}/roles", headers=headers,
                      json={"roles": ["analyst", "coordinator"]})
    assert resp.status_code == 200 and resp.json["roles"] == ["analyst", "coordinator"]
    bad = client.put(f"/api/v1/users/{user_id}/roles", headers=headers, json={"roles": ["chief"]})
    assert bad.status_code == 422 and "roles" in bad.json["error"]["fields"]
    resp = client.post(f"/api/v1/users/{user_id}/deactivate", headers=headers)
    assert resp.status_code == 200 and resp.json["active"] is False


def test_a_weak_password_given_through_the_api_is_refused(app, client, admin):
    resp = client.post("/api/v1/users", headers=bearer(token_for(admin)), json={
        "username": "mreyes", "full_name": "Maria Reyes", "email": "mreyes@lakeport.gov",
        "agency_id": admin.agency_id, "roles": ["investigator"], "password": "mreyes123456789"})
    assert resp.status_code == 422
    assert "username" in resp.json["error"]["fields"]["password"][0]


def test_supervisors_see_and_unlock_only_their_agency(app, client):
    home, other = make_agency(), make_agency()
    supervisor, _, _ = make_user(agency=home, roles=["supervisor"])
    colleague, _, _ = make_user(agency=home)
    stranger, _, _ = make_user(agency=other)
    headers = bearer(token_for(supervisor))
    names = {u["username"] for u in client.get("/api/v1/users", headers=headers).json}
    assert names == {supervisor.username, colleague.username}
    for user in (colleague, stranger):
        for _ in range(5):
            with pytest.raises((Unauthorized, Locked)):
                service.check_password(actor=Actor.anonymous(), username=user.username,
                                       password="wrong password!!")
    resp = client.post(f"/api/v1/users/{colleague.id}/unlock", headers=headers)
    assert resp.status_code == 200 and resp.json["locked"] is False
    resp = client.post(f"/api/v1/users/{stranger.id}/unlock", headers=headers)
    assert resp.status_code == 403 and resp.json["error"]["code"] == "forbidden"
    assert client.post("/api/v1/users", headers=headers, json={}).status_code == 403


def test_own_tokens_from_a_browser_session(app, client):
    user, password, secret = make_user()
    login(client, user.username, password, secret)
    token = csrf_from(client.get("/account/tokens").data)
    # A cookie-authenticated API write still needs the CSRF token.
    no_csrf = client.post("/api/v1/tokens", json={"name": "script", "scope": "read"})
    assert no_csrf.status_code == 400
    resp = client.post("/api/v1/tokens", json={"name": "script", "scope": "read"},
                       headers={"X-CSRFToken": token})
    assert resp.status_code == 201
    raw, token_id = resp.json["token"], resp.json["api_token"]["id"]
    assert raw.startswith("tf_") and resp.json["api_token"]["status"] == "active"
    listed = client.get("/api/v1/tokens", headers=bearer(raw)).json
    assert [t["id"] for t in listed] == [token_id] and "token" not in listed[0]
    # A token cannot mint another token, even a write one.
    write = token_for(user, "write")
    assert client.post("/api/v1/tokens", headers=bearer(write),
                       json={"name": "x", "scope": "write"}).status_code == 403
    resp = client.post(f"/api/v1/tokens/{token_id}/revoke", headers=bearer(write))
    assert resp.status_code == 200 and resp.json["status"] == "revoked"
    assert client.get("/api/v1/me", headers=bearer(raw)).status_code == 401


def test_the_tokens_page_shows_a_new_token_once(app, client):
    user, password, secret = make_user()
    login(client, user.username, password, secret)
    resp = post_form(client, "/account/tokens",
                     {"name": "case import", "scope": "read", "expires_in_days": "30"})
    assert resp.status_code == 201
    raw = re.search(r'id="token-value"[^>]*>(tf_[^<]+)<', resp.data.decode()).group(1)
    assert raw.startswith("tf_")
    listing = client.get("/account/tokens")
    assert raw.encode() not in listing.data and b"case import" in listing.data
    assert client.get("/api/v1/me", headers=bearer(raw)).status_code == 200
    bad = post_form(client, "/account/tokens",
                    {"name": "x", "scope": "read", "expires_in_days": "400"})
    assert bad.status_code == 422 and b"1 to 365 days" in bad.data
