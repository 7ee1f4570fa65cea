"""In real Chromium: upload a file on the case's evidence page (the page's script
streams it to the API with a progress bar), see its hash and chain of custody,
build a prosecutor package from it, download it, and check the ZIP offline."""
from __future__ import annotations

import hashlib
import json
import re
import secrets

import pytest
from playwright.sync_api import expect

from taskforce.evidence import verify as verifier
from tests.factories import fresh_code, make_agency, make_user
from tests.factories_graph import closed_bolt_uri, ensure_graph_registered
from tests.factories_investigations import actor_for, make_case

pytestmark = pytest.mark.e2e

# Records what the progress bar and the status line showed while the upload ran, in
# sessionStorage (it outlives the page's move to the new item's page).
WATCH = """() => {
  sessionStorage.setItem('seen', JSON.stringify({values: [], texts: []}));
  const bar = document.getElementById('ev-progress');
  const status = document.getElementById('ev-status');
  function keep(key, value) {
    const seen = JSON.parse(sessionStorage.getItem('seen'));
    seen[key].push(value);
    sessionStorage.setItem('seen', JSON.stringify(seen));
  }
  new MutationObserver(() => { if (!bar.hidden && bar.hasAttribute('value')) keep('values', bar.value); })
    .observe(bar, {attributes: true});
  new MutationObserver(() => keep('texts', status.textContent))
    .observe(status, {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture()
def app_environ(app_environ):
    return {**app_environ, "NEO4J_URI": closed_bolt_uri(), "NEO4J_PASSWORD": "unused"}


def test_upload_with_progress_see_custody_build_and_download_a_package(
        app, live_server, page, tmp_path, capsys):
    from taskforce import evidence

    ensure_graph_registered(app)
    if "evidence" not in app.blueprints:
        evidence.init_app(app)
    agency = make_agency()
    user, password, secret = make_user(agency=agency, roles=["investigator"])
    case_id = make_case(actor_for(user), title="Operation Heron")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)

    page.goto(f"{live_server}/login")
    page.fill("#username", user.username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/login/mfa"))
    page.fill("#code", fresh_code(user.username, secret))
    page.click("button[type=submit]")
    expect(page.get_by_test_id("whoami")).to_have_text(user.username)

    data = secrets.token_bytes(24 * 1024 * 1024)
    path = tmp_path / "phone-extraction.bin"
    path.write_bytes(data)
    page.goto(f"{live_server}/cases/{case_id}/evidence")
    page.set_input_files("#ev-file", str(path))
    page.fill("#ev-description", "Phone extraction, handset 1")
    page.fill("#ev-collected-place", "Motel 6, room 12")
    page.evaluate(WATCH)
    page.click("#evidence-upload button[type=submit]")

    expect(page).to_have_url(re.compile(r"/evidence/\d+$"), timeout=60_000)
    seen = json.loads(page.evaluate("sessionStorage.getItem('seen')"))
    assert any(t.startswith("Sent ") for t in seen["texts"]), seen  # "Sent 3.0 MiB of 24.0 MiB"
    assert any("checking the hash" in t for t in seen["texts"]), seen
    assert seen["values"] and max(seen["values"]) >= 90, seen
    expect(page.get_by_test_id("sha256")).to_have_text(hashlib.sha256(data).hexdigest())
    expect(page.get_by_test_id("md5")).to_have_text(hashlib.md5(data).hexdigest())
    custody = page.get_by_test_id("custody")
    expect(custody).to_contain_text("Collected")
    expect(custody).to_contain_text("Received")
    expect(custody).to_contain_text("Motel 6, room 12")
    item_url = page.url

    # build a package from the first item on the case page
    page.goto(f"{live_server}/cases/{case_id}/evidence")
    item_id = item_url.rsplit("/", 1)[1]
    page.check(f"input[name=item_ids][value='{item_id}']")
    page.click("[data-testid=build-package]")
    expect(page).to_have_url(re.compile(r"/packages/\d+$"))
    expect(page.get_by_test_id("package-status")).to_have_text("Ready", timeout=30_000)
    sha = page.get_by_test_id("package-sha256").inner_text()
    fingerprint = page.get_by_test_id("key-fingerprint").inner_text()
    with page.expect_download() as info:
        page.click("[data-testid=download-package]")
    zip_path = tmp_path / "package.zip"
    info.value.save_as(zip_path)
    assert hashlib.sha256(zip_path.read_bytes()).hexdigest() == sha
    assert verifier.main([str(zip_path), "--fingerprint", fingerprint]) == 0
    assert "INTACT" in capsys.readouterr().out

    # the item's chain now shows the export and the download
    page.goto(item_url)
    expect(custody).to_contain_text("Exported")
    expect(custody).to_contain_text("Accessed")
    # the browser asks for /favicon.ico, which the app does not serve; nothing else is missing
    assert all(url.endswith("/favicon.ico") for url in missing), missing
    assert len([e for e in errors if "404" not in e]) == 0, errors
