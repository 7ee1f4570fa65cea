"""The authorisation matrix, built from the app's URL map.

Every endpoint must carry a rule; every protected endpoint must refuse
anonymous callers, and every role-restricted endpoint must refuse each role
it does not name. A new endpoint without a rule fails `test_every_endpoint_has_a_rule`.
"""
from __future__ import annotations

import re

import pytest

from taskforce.accounts.permissions import ROLES, endpoint_rules, public
from tests.factories import login, make_agency, make_user

SKIP_METHODS = {"HEAD", "OPTIONS"}


def _routes(app):
    """(endpoint, method, concrete url, rule) for every route in the URL map."""
    rules = dict(endpoint_rules(app))
    for url_rule in app.url_map.iter_rules():
        if url_rule.endpoint == "static":
            continue
        url = re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>",
                     lambda m: "1" if m.group(1) in ("int", "float") else "x", url_rule.rule)
        for method in sorted(url_rule.methods - SKIP_METHODS):
            yield url_rule.endpoint, method, url, rules.get(url_rule.endpoint)


def _call(client, method, url, headers=None):
    return client.open(url, method=method, headers=headers or {}, json={} if method != "GET" else None)


def test_every_endpoint_has_a_rule(app):
    missing = sorted({ep for ep, _, _, rule in _routes(app) if rule is None})
    assert not missing, f"endpoints without a permission rule: {missing}"


def test_an_endpoint_without_a_rule_is_closed_to_everyone(app):
    @app.get("/__no_rule")
    def no_rule():
        return "should never be served"

    assert dict(endpoint_rules(app))["no_rule"] is None
    resp = app.test_client().get("/__no_rule")
    assert resp.status_code == 403
    assert b"should never be served" not in resp.data


def test_protected_endpoints_refuse_anonymous(app, client):
    leaks = []
    for ep, method, url, rule in _routes(app):
        if rule is None or rule.public:
            continue
        resp = _call(client, method, url, headers={"Accept": "application/json"})
        if resp.status_code != 401:
            leaks.append(f"{method} {url} ({ep}) -> {resp.status_code}")
    assert not leaks, "protected endpoints answered anonymous callers:\n" + "\n".join(leaks)


def test_pages_send_anonymous_people_to_sign_in(client):
    resp = client.get("/", headers={"Accept": "text/html"})
    assert resp.status_code == 302
    assert "/login" in resp.headers["Location"]


@pytest.mark.parametrize("role", ROLES)
def test_role_restricted_endpoints_refuse_other_roles(app, client, role):
    agency = make_agency()
    user, password, secret = make_user(agency=agency, roles=[role])
    login(client, user.username, password, secret)
    wrongly_allowed = []
    for ep, method, url, rule in _routes(app):
        if rule is None or rule.public or not rule.roles or role in rule.roles:
            continue
        resp = _call(client, method, url, headers={"Accept": "application/json"})
        if resp.status_code != 403:
            wrongly_allowed.append(f"{method} {url} ({ep}) -> {resp.status_code}")
    assert not wrongly_allowed, f"{role} reached endpoints not granted to it:\n" + "\n".join(
        wrongly_allowed)


@pytest.mark.parametrize("role", ROLES)
def test_granted_roles_get_past_the_check(app, client, role):
    """The other half: a role named by a rule is not refused by the role check."""
    agency = make_agency()
    user, password, secret = make_user(agency=agency, roles=[role])
    login(client, user.username, password, secret)
    refused = []
    for ep, method, url, rule in _routes(app):
        if rule is None or rule.public or method != "GET" or "1" in url or "/x" in url:
            continue
        if rule.roles and role not in rule.roles:
            continue
        resp = _call(client, method, url, headers={"Accept": "application/json"})
        if resp.status_code in (401, 403):
            refused.append(f"{method} {url} ({ep}) -> {resp.status_code}")
    assert not refused, f"{role} was refused endpoints granted to it:\n" + "\n".join(refused)


def test_rules_are_declared_once():
    def view():
        return ""

    public(view)
    with pytest.raises(RuntimeError):
        public(view)
