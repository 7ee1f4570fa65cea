"""Sign-in, MFA, lockout, sessions and CSRF through the real forms and the test client."""
from __future__ import annotations

import re
import time
from datetime import timedelta

import pyotp
from sqlalchemy import select

from taskforce.accounts import PENDING_KEY, SESSION_KEY, service
from taskforce.accounts.models import UserSession, utcnow
from taskforce.audit.models import AuditEvent
from taskforce.extensions import db
from tests.factories import CONSOLE, csrf_from, fresh_code, login, make_agency, make_user, post_form

GENERIC = "Invalid username or password"


def _password_step(client, username, password):
    return post_form(client, "/login", {"username": username, "password": password})


def _sessions(user_id) -> list[UserSession]:
    db.session.expire_all()
    return list(db.session.scalars(select(UserSession).where(UserSession.user_id == user_id)
                                   .order_by(UserSession.id)))


def test_sign_in_with_password_and_totp_reaches_the_dashboard(app, client):
    agency = make_agency(name="Lakeport Police Department")
    user, password, secret = make_user(agency=agency, roles=["investigator"])
    resp = _password_step(client, user.username, password)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login/mfa")
    resp = post_form(client, "/login/mfa", {"code": pyotp.TOTP(secret).now()})
    assert resp.status_code == 302
    page = client.get("/")
    assert page.status_code == 200
    assert user.username.encode() in page.data and b"Lakeport Police Department" in page.data
    assert len(_sessions(user.id)) == 1


def test_unknown_user_and_wrong_password_look_the_same(app, client):
    user, _, _ = make_user()
    unknown = _password_step(client, "no.such.person", "some long password")
    wrong = _password_step(client, user.username, "some long password")
    assert unknown.status_code == wrong.status_code == 401
    for resp in (unknown, wrong):
        assert GENERIC.encode() in resp.data
        assert b'class="error" role="alert"' in resp.data


def test_the_login_page_needs_a_csrf_token(app, client):
    user, password, _ = make_user()
    client.get("/login")
    resp = client.post("/login", data={"username": user.username, "password": password})
    assert resp.status_code == 400
    assert b"CSRF token is missing or invalid" in resp.data


def test_sign_out_needs_a_csrf_token_and_ends_the_server_session(app, client):
    user, password, secret = make_user()
    login(client, user.username, password, secret)
    assert client.post("/logout").status_code == 400  # no token: still signed in
    assert client.get("/").status_code == 200
    stolen_cookie = client.get_cookie("session").value
    resp = post_form(client, "/logout", {}, page="/")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    [row] = _sessions(user.id)
    assert row.ended_at is not None and row.end_reason == "logout"
    # The cookie copied before sign-out is worth nothing afterwards.
    client.set_cookie("session", stolen_cookie)
    assert client.get("/").status_code == 302


def test_nothing_protected_is_reachable_between_password_and_code(app, client):
    user, password, _ = make_user(roles=["admin"])
    _password_step(client, user.username, password)
    assert client.get("/").status_code == 302
    assert client.get("/admin/users").status_code == 302
    assert client.get("/api/v1/me").status_code == 401


def test_the_pending_second_step_expires_after_five_minutes(app, client):
    user, password, secret = make_user()
    _password_step(client, user.username, password)
    with client.session_transaction() as sess:
        pending = dict(sess[PENDING_KEY])
        pending["until"] = time.time() - 1
        sess[PENDING_KEY] = pending
    resp = client.get("/login/mfa", follow_redirects=True)
    assert b"took longer than 5 minutes" in resp.data
    token = csrf_from(client.get("/login").data)
    resp = client.post("/login/mfa", data={"code": pyotp.TOTP(secret).now(), "csrf_token": token})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")
    assert _sessions(user.id) == []


def test_the_session_is_renewed_at_sign_in(app, client):
    """Session fixation: nothing planted before sign-in survives it."""
    user, password, secret = make_user()
    client.get("/login")
    with client.session_transaction() as sess:
        sess["planted"] = "by an attacker"
        sess[SESSION_KEY] = "attacker-chosen-session-id"
    before = client.get_cookie("session").value
    login(client, user.username, password, secret)
    after = client.get_cookie("session").value
    assert before != after
    with client.session_transaction() as sess:
        assert "planted" not in sess
        assert sess[SESSION_KEY] != "attacker-chosen-session-id"
        first_sid = sess[SESSION_KEY]
    post_form(client, "/logout", {}, page="/")
    login(client, user.username, password, secret)
    with client.session_transaction() as sess:
        assert sess[SESSION_KEY] != first_sid
    rows = _sessions(user.id)
    assert len(rows) == 2 and rows[0].token_hash != rows[1].token_hash


def test_a_wrong_code_is_refused_with_a_message(app, client):
    user, password, secret = make_user()
    _password_step(client, user.username, password)
    good = pyotp.TOTP(secret).now()
    resp = post_form(client, "/login/mfa", {"code": f"{(int(good) + 500_000) % 1_000_000:06d}"})
    assert resp.status_code == 401 and b"That code is not valid" in resp.data
    assert client.get("/").status_code == 302


def test_a_used_totp_code_cannot_sign_in_again(app, client):
    user, password, secret = make_user()
    _password_step(client, user.username, password)
    code = fresh_code(user.username, secret)
    assert post_form(client, "/login/mfa", {"code": code}).status_code == 302
    post_form(client, "/logout", {}, page="/")
    _password_step(client, user.username, password)
    resp = post_form(client, "/login/mfa", {"code": code})
    assert resp.status_code == 401


def test_five_failures_lock_the_account_and_the_page_says_until_when(app, client):
    user, password, _ = make_user()
    for _ in range(4):
        assert GENERIC.encode() in _password_step(client, user.username, "wrong password!!").data
    fifth = _password_step(client, user.username, "wrong password!!")
    assert fifth.status_code == 423
    assert re.search(rb"locked until \d{4}-\d\d-\d\d \d\d:\d\d UTC", fifth.data)
    sixth = _password_step(client, user.username, password)  # the right one, too late
    assert sixth.status_code == 423 and b"locked until" in sixth.data
    assert client.get("/").status_code == 302
    db.session.expire_all()
    locked = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "account.locked", AuditEvent.object_id == str(user.id))).all()
    assert len(locked) == 1 and locked[0].outcome == "denied"


def test_a_supervisor_unlocks_from_the_users_page(app, client):
    agency = make_agency()
    supervisor, sup_password, sup_secret = make_user(agency=agency, roles=["supervisor"])
    user, password, secret = make_user(agency=agency)
    for _ in range(5):
        _password_step(client, user.username, "wrong password!!")
    login(client, supervisor.username, sup_password, sup_secret)
    page = client.get("/admin/users")
    assert b"locked" in page.data and f"unlock-{user.username}".encode() in page.data
    resp = post_form(client, f"/admin/users/{user.id}/unlock", {}, page="/admin/users")
    assert resp.status_code == 302
    post_form(client, "/logout", {}, page="/")
    login(client, user.username, password, secret)
    assert client.get("/").status_code == 200


def test_a_supervisor_of_another_agency_cannot_unlock(app, client):
    supervisor, sup_password, sup_secret = make_user(agency=make_agency(), roles=["supervisor"])
    user, _, _ = make_user(agency=make_agency())
    for _ in range(5):
        _password_step(client, user.username, "wrong password!!")
    login(client, supervisor.username, sup_password, sup_secret)
    resp = post_form(client, f"/admin/users/{user.id}/unlock", {}, page="/admin/users")
    assert resp.status_code == 403
    db.session.expire_all()
    assert service.find_user(username=user.username).locked_until is not None


def test_an_idle_session_sends_the_page_to_sign_in_and_the_api_gets_401(app, client):
    user, password, secret = make_user()
    login(client, user.username, password, secret)
    assert client.get("/").status_code == 200
    [row] = _sessions(user.id)
    row.last_seen_at = utcnow() - timedelta(minutes=31)
    db.session.commit()
    resp = client.get("/")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    page = client.get(resp.headers["Location"])
    assert b"Your session ended after 30 minutes without activity" in page.data
    [row] = _sessions(user.id)
    assert row.end_reason == "idle"
    assert client.get("/api/v1/me").status_code == 401


def test_an_idle_api_session_gets_401(app, client):
    user, password, secret = make_user()
    login(client, user.username, password, secret)
    assert client.get("/api/v1/me").status_code == 200
    [row] = _sessions(user.id)
    row.last_seen_at = utcnow() - timedelta(minutes=31)
    db.session.commit()
    resp = client.get("/api/v1/me")
    assert resp.status_code == 401 and resp.json["error"]["code"] == "unauthorized"


def test_first_sign_in_enrols_mfa_then_shows_recovery_codes_once(app, client):
    user, password, _ = make_user(mfa=False)
    resp = _password_step(client, user.username, password)
    assert resp.headers["Location"].endswith("/mfa/enrol")
    page = client.get("/mfa/enrol")
    assert b'src="data:image/svg+xml' in page.data
    seed = re.search(rb'id="secret"[^>]*>([A-Z2-7]+)<', page.data).group(1).decode()
    assert client.get("/").status_code == 302  # not signed in yet
    resp = post_form(client, "/mfa/enrol", {"code": pyotp.TOTP(seed).now()})
    assert resp.status_code == 200
    codes = re.findall(rb"<li>([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})</li>", resp.data)
    assert len(codes) == 10
    assert client.get("/").status_code == 200
    # Sign in again with a recovery code instead of the app.
    post_form(client, "/logout", {}, page="/")
    _password_step(client, user.username, password)
    resp = post_form(client, "/login/mfa", {"code": codes[0].decode()})
    assert resp.status_code == 302
    home = client.get("/")
    assert home.status_code == 200 and b"recovery code; 9 left" in home.data


def test_a_temporary_password_must_be_replaced_first(app, client):
    admin, _, _ = make_user(roles=["admin"])
    from tests.unit.test_accounts_service import as_actor

    user, temporary = service.create_user(
        actor=as_actor(admin), username="newhire", full_name="New Hire",
        email="new@lakeport.gov", agency_id=admin.agency_id, roles=["investigator"])
    secret = service.enrol_for_console(actor=CONSOLE, user_id=user.id)
    login(client, "newhire", temporary, secret)
    resp = client.get("/")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/account/password")
    assert client.get("/api/v1/me").status_code == 403
    resp = post_form(client, "/account/password", {
        "current_password": temporary, "new_password": "seven lanterns over the bay",
        "new_password_again": "seven lanterns over the bay"})
    assert resp.status_code == 302
    assert client.get("/").status_code == 200


def test_changing_the_password_checks_the_policy_and_ends_other_sessions(app, client):
    user, password, secret = make_user()
    other = app.test_client()
    login(other, user.username, password, secret)
    login(client, user.username, password, secret)
    resp = post_form(client, "/account/password", {
        "current_password": password, "new_password": "password1234",
        "new_password_again": "password1234"})
    assert resp.status_code == 422 and b"common or breached" in resp.data
    resp = post_form(client, "/account/password", {
        "current_password": password, "new_password": "amber gulls at low tide",
        "new_password_again": "amber gulls at low tide"})
    assert resp.status_code == 302
    assert client.get("/").status_code == 200
    assert other.get("/").status_code == 302  # the other browser was signed out
    reasons = sorted(r.end_reason or "live" for r in _sessions(user.id))
    assert reasons == ["live", "password_changed"]


def test_sign_in_does_not_redirect_off_site(app, client):
    user, password, secret = make_user()
    token = csrf_from(client.get("/login?next=//evil.example/x").data)
    client.post("/login", data={"username": user.username, "password": password,
                                "csrf_token": token, "next": "https://evil.example/"})
    resp = post_form(client, "/login/mfa", {"code": pyotp.TOTP(secret).now()})
    assert resp.headers["Location"] == "/"


def test_sign_in_returns_to_the_page_asked_for(app, client):
    user, password, secret = make_user(roles=["admin"])
    resp = client.get("/admin/agencies")
    assert "/login?next=/admin/agencies" in resp.headers["Location"]
    token = csrf_from(client.get(resp.headers["Location"]).data)
    client.post("/login", data={"username": user.username, "password": password,
                                "csrf_token": token, "next": "/admin/agencies"})
    resp = post_form(client, "/login/mfa", {"code": pyotp.TOTP(secret).now()})
    assert resp.headers["Location"] == "/admin/agencies"


def test_sign_in_is_rate_limited_per_address(app, client):
    token = csrf_from(client.get("/login").data)
    statuses = [client.post("/login", data={"username": f"nobody{i}", "password": "x" * 12,
                                            "csrf_token": token}).status_code
                for i in range(11)]
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429
    last = client.post("/login", data={"username": "x", "password": "y", "csrf_token": token})
    assert last.status_code == 429 and b"Too many sign-in attempts" in last.data


def test_sign_in_is_rate_limited_per_account_name(app, client):
    token = csrf_from(client.get("/login").data)
    statuses = []
    for i in range(11):
        statuses.append(client.post(
            "/login", data={"username": "target.name", "password": "x" * 12, "csrf_token": token},
            environ_base={"REMOTE_ADDR": f"203.0.113.{i + 1}"}).status_code)
    assert statuses[-1] == 429 and 429 not in statuses[:10]
