"""Browser tests: the real app served on loopback, driven in real Chromium.

Chromium comes from Debian (/usr/bin/chromium); Playwright never downloads a
browser here. The flags keep Chromium from reaching out to the network,
which this machine does not have.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import pytest
from werkzeug.serving import make_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions",
]


@pytest.fixture()
def live_server(app):
    """Serve the test app on a free loopback port for the duration of one test."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, tmp_path):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


# Helpers shared by the browser tests ------------------------------------------------------
# (plain functions: import them, e.g. `from tests.e2e.conftest import sign_in`)

@dataclass
class Account:
    """A user who can sign in: the password and the TOTP secret that go with them."""

    user: object
    password: str
    secret: str | None


def account(agency, roles=("investigator",)) -> Account:
    from tests.factories import make_user

    user, password, secret = make_user(agency=agency, roles=list(roles))
    return Account(user, password, secret)


def sign_in(page, base: str, who: Account) -> None:
    """Password, then the TOTP code, on the real login pages; ends on the dashboard."""
    from playwright.sync_api import expect

    from tests.factories import fresh_code

    page.goto(f"{base}/login")
    page.fill("#username", who.user.username)
    page.fill("#password", who.password)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/login/mfa"))
    page.fill("#code", fresh_code(who.user.username, who.secret))
    page.click("button[type=submit]")
    expect(page.get_by_test_id("whoami")).to_have_text(who.user.username)


# The network graph page (static/js/network-graph.js exposes window.networkGraph) ---------

def open_graph(page, base: str, case_id: int) -> None:
    resp = page.goto(f"{base}/cases/{case_id}/network")
    assert resp.status == 200
    page.wait_for_function("() => window.networkGraph !== undefined")
    page.evaluate("() => window.networkGraph.ready")


def drawn(page) -> dict[int, str]:
    """Entity id -> label of every node on the canvas (and not hidden by a filter)."""
    pairs = page.evaluate("() => window.networkGraph.cy.nodes().not('.filtered')"
                          ".map(n => [n.data('entity'), n.data('label')])")
    return {entity: label for entity, label in pairs}


def click_node(page, entity_id: int) -> None:
    """A real mouse click on the node where Cytoscape drew it."""
    canvas = page.locator("#network-canvas")
    canvas.scroll_into_view_if_needed()
    x, y = page.evaluate("id => { const p = window.networkGraph.cy.getElementById('n' + id)"
                         ".renderedPosition(); return [p.x, p.y]; }", entity_id)
    canvas.click(position={"x": x, "y": y})


def idle(page) -> None:
    """Wait until the page has no graph question in flight."""
    page.wait_for_function("() => window.networkGraph.busy === 0")


@pytest.fixture()
def clean_graph(clean_graph):
    """The shared empty-graph fixture (tests/conftest.py), and the page's library here."""
    from pathlib import Path

    vendor = Path(__file__).resolve().parents[2] / "taskforce" / "static" / "vendor"
    assert (vendor / "cytoscape" / "cytoscape.min.js").is_file(), (
        "front-end libraries missing: run `scripts/services.py install assets`")
    return clean_graph


@pytest.fixture()
def tall_page(browser):
    """A page tall enough that the whole graph canvas fits on the screen; it collects
    the Content Security Policy violations the console reports."""
    context = browser.new_context(viewport={"width": 1400, "height": 1300})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.csp_violations = []
    page.on("console", lambda m: page.csp_violations.append(m.text)
            if "Content Security Policy" in m.text else None)
    yield page
    context.close()
