"""Sign in with password and TOTP in real Chromium, per role."""
from __future__ import annotations

import re

import pyotp
import pytest
from playwright.sync_api import expect

from tests.factories import make_agency, make_user

pytestmark = pytest.mark.e2e


def _sign_in(page, base, username, password):
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")


@pytest.mark.parametrize("role, card_text", [
    ("investigator", "Your cases, leads and tasks"),
    ("coordinator", "Open deconfliction hits"),
    ("admin", "Agencies, users, roles"),
])
def test_sign_in_with_password_and_totp_shows_the_role_dashboard(live_server, page, role,
                                                                  card_text):
    agency = make_agency()
    user, password, secret = make_user(agency=agency, roles=[role])
    _sign_in(page, live_server, user.username, password)
    expect(page).to_have_url(re.compile(r"/login/mfa"))
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("button[type=submit]")
    expect(page.get_by_test_id("whoami")).to_have_text(user.username)
    expect(page.get_by_test_id("role-cards")).to_contain_text(card_text)
    nav = page.locator("nav[aria-label=main]")
    if role == "admin":
        expect(nav).to_contain_text("Agencies")
    else:
        expect(nav).not_to_contain_text("Agencies")


def test_a_failed_sign_in_shows_a_clear_message(live_server, page):
    agency = make_agency()
    user, _password, _secret = make_user(agency=agency, roles=["investigator"])
    _sign_in(page, live_server, user.username, "not-the-password-at-all")
    expect(page.get_by_role("alert")).to_contain_text("Invalid username or password")
    expect(page).to_have_url(re.compile(r"/login"))
    assert page.get_by_test_id("whoami").count() == 0


def test_a_wrong_totp_code_is_refused(live_server, page):
    agency = make_agency()
    user, password, secret = make_user(agency=agency, roles=["analyst"])
    _sign_in(page, live_server, user.username, password)
    expect(page).to_have_url(re.compile(r"/login/mfa"))
    good = pyotp.TOTP(secret).now()
    page.fill("#code", f"{(int(good) + 1) % 1_000_000:06d}")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_be_visible()
    assert page.get_by_test_id("whoami").count() == 0
