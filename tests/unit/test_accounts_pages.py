"""Agency and user administration pages, through the real forms."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from taskforce.accounts import service
from taskforce.accounts.models import Agency
from taskforce.extensions import db
from tests.factories import login, make_agency, make_user, post_form


@pytest.fixture()
def admin_client(app, client):
    admin, password, secret = make_user(roles=["admin"])
    login(client, admin.username, password, secret)
    return client


def test_admin_creates_and_edits_an_agency(app, admin_client):
    client = admin_client
    resp = post_form(client, "/admin/agencies/new", {
        "name": "Lakeport Police Department", "level": "local", "ori": "oh0480500",
        "active": "on"})
    assert resp.status_code == 302
    page = client.get("/admin/agencies")
    assert b"Lakeport Police Department" in page.data and b"OH0480500" in page.data
    agency = db.session.scalar(select(Agency).where(Agency.ori == "OH0480500"))
    resp = post_form(client, f"/admin/agencies/{agency.id}/edit", {
        "name": "Lakeport PD", "level": "local", "ori": "OH0480500"})  # unticked: inactive
    assert resp.status_code == 302
    db.session.expire_all()
    assert (agency.name, agency.active) == ("Lakeport PD", False)


def test_agency_form_shows_errors_and_keeps_the_input(app, admin_client):
    resp = post_form(admin_client, "/admin/agencies/new",
                     {"name": "Lakeport PD", "level": "local", "ori": "OH12"})
    assert resp.status_code == 422
    assert b"ORI must be 9 characters" in resp.data and b'value="Lakeport PD"' in resp.data
    make_agency(name="Taken PD", ori="OH0000001")
    resp = post_form(admin_client, "/admin/agencies/new",
                     {"name": "taken pd", "level": "local", "ori": "OH0000002"})
    assert resp.status_code == 409 and b"already exists" in resp.data
    assert db.session.scalar(select(func.count(Agency.id))) == 2  # the admin's and Taken PD


def test_admin_creates_a_user_who_then_sets_up_their_sign_in(app, admin_client):
    agency = make_agency(name="Lakeport Police Department")
    resp = post_form(admin_client, "/admin/users/new", {
        "username": "mreyes", "full_name": "Maria Reyes", "email": "mreyes@lakeport.gov",
        "agency_id": str(agency.id), "roles": ["investigator", "analyst"]})
    assert resp.status_code == 201
    temporary = re.search(rb'id="temporary-password"[^>]*>([^<]+)<', resp.data).group(1).decode()
    page = admin_client.get("/admin/users")
    assert b"mreyes" in page.data and b"analyst, investigator" in page.data

    newcomer = app.test_client()
    resp = post_form(newcomer, "/login", {"username": "mreyes", "password": temporary})
    assert resp.headers["Location"].endswith("/mfa/enrol")


def test_user_form_errors(app, admin_client):
    agency = make_agency()
    resp = post_form(admin_client, "/admin/users/new", {
        "username": "x", "full_name": "Maria Reyes", "email": "not-an-email",
        "agency_id": str(agency.id), "roles": []})
    assert resp.status_code == 422 and b'role="alert"' in resp.data


def test_admin_changes_roles_deactivates_and_resets(app, admin_client):
    user, _, _ = make_user(roles=["investigator"])
    page = admin_client.get(f"/admin/users/{user.id}")
    assert page.status_code == 200 and b"Deactivate" in page.data
    url = f"/admin/users/{user.id}"
    post_form(admin_client, f"{url}/roles", {"roles": ["coordinator"]}, page=url)
    db.session.expire_all()
    assert service.find_user(username=user.username).role_names == ["coordinator"]
    post_form(admin_client, f"{url}/deactivate", {}, page=url)
    db.session.expire_all()
    assert service.find_user(username=user.username).active is False
    post_form(admin_client, f"{url}/reactivate", {}, page=url)
    resp = post_form(admin_client, f"{url}/reset", {}, page=url)
    assert resp.status_code == 200 and b"temporary-password" in resp.data
    db.session.expire_all()
    again = service.find_user(username=user.username)
    assert again.active and not again.mfa_enrolled and again.must_change_password


def test_a_supervisor_sees_own_agency_read_only(app, client):
    home, other = make_agency(name="Home PD"), make_agency(name="Other PD")
    supervisor, password, secret = make_user(agency=home, roles=["supervisor"])
    colleague, _, _ = make_user(agency=home)
    stranger, _, _ = make_user(agency=other)
    login(client, supervisor.username, password, secret)
    page = client.get("/admin/users")
    assert colleague.username.encode() in page.data
    assert stranger.username.encode() not in page.data
    assert b"New user" not in page.data
    detail = client.get(f"/admin/users/{colleague.id}")
    assert detail.status_code == 200 and b"Deactivate" not in detail.data
    assert client.get(f"/admin/users/{stranger.id}").status_code == 404
    url = f"/admin/users/{colleague.id}"
    assert post_form(client, f"{url}/deactivate", {}, page=url).status_code == 403


def test_pages_carry_no_inline_script_or_style(app, admin_client):
    user, _, _ = make_user()
    for url in ("/admin/agencies", "/admin/agencies/new", "/admin/users", "/admin/users/new",
                f"/admin/users/{user.id}", "/account/tokens", "/account/password"):
        html = admin_client.get(url).data.decode()
        # scripts only from files (the CSP allows 'self', never inline code)
        inline = [t for t in re.findall(r"<script[^>]*>", html) if " src=" not in t]
        assert not inline and " style=" not in html and "onclick" not in html, url
        for form in re.findall(r"<form[^>]*method=\"post\".*?</form>", html, re.DOTALL):
            assert 'name="csrf_token"' in form, url
