"""Import a CSV of call records on the case's import page in real Chromium: the file
goes up through the page's script (raw body to the API, with the CSRF header), the
run page shows it complete with its bad row, and the case's list shows the import.
Then the same file again: the page says nothing new was created. Last, a queued
import: its page polls the JSON status and shows it complete once the job runs.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from taskforce.graph import imports
from taskforce.investigations import service as cases
from tests.factories import fresh_code, make_agency, make_user
from tests.factories_graph import closed_bolt_uri, ensure_graph_registered
from tests.factories_investigations import actor_for, make_case

pytestmark = pytest.mark.e2e

CSV = ("caller,callee,start,duration,call_type\n"
       "+13125550101,+13125550102,2024-03-01T10:00:00,60,voice\n"
       "+13125550101,+13125550102,2024-03-05T09:00:00,30,voice\n"
       "+13125550102,+13125550103,2024-03-02T11:00:00,12,voice\n"
       "+13125550101,not-a-phone,2024-03-03T12:00:00,0,sms\n")


@pytest.fixture()
def app_environ(app_environ):
    """Neo4j is not needed here: the outbox rows wait."""
    return {**app_environ, "NEO4J_URI": closed_bolt_uri(), "NEO4J_PASSWORD": "unused"}


def test_import_a_csv_on_the_page_and_see_it_complete(app, live_server, page, tmp_path):
    ensure_graph_registered(app)
    agency = make_agency()
    user, password, secret = make_user(agency=agency, roles=["investigator"])
    lead, _, _ = make_user(agency=agency, roles=["investigator"])
    case_id = make_case(actor_for(lead), title="Operation Osprey")
    cases.add_member(actor=actor_for(lead), case_id=case_id, user_id=user.id,
                     case_role="investigator")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    page.goto(f"{live_server}/login")
    page.fill("#username", user.username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/login/mfa"))
    page.fill("#code", fresh_code(user.username, secret))
    page.click("button[type=submit]")
    expect(page.get_by_test_id("whoami")).to_have_text(user.username)

    path = tmp_path / "carrier-return.csv"
    path.write_text(CSV)
    page.goto(f"{live_server}/cases/{case_id}/imports")
    expect(page.get_by_test_id("imports")).to_contain_text("Nothing imported yet")
    page.set_input_files("#im-file", str(path))
    page.select_option("#im-kind", "cdr")
    page.click("#import-upload button[type=submit]")

    expect(page).to_have_url(re.compile(r"/imports/\d+$"))
    expect(page.get_by_test_id("run-status")).to_have_text("Done")
    expect(page.get_by_test_id("rows-loaded")).to_have_text("3")
    expect(page.get_by_test_id("rows-bad")).to_have_text("1")
    expect(page.get_by_test_id("bad-rows")).to_contain_text("not-a-phone")
    expect(page.locator("#run-progress")).to_have_attribute("value", "100")
    expect(page.locator("#run-result")).to_contain_text("2 links created")

    page.goto(f"{live_server}/cases/{case_id}/imports")
    expect(page.get_by_test_id("imports")).to_contain_text("carrier-return.csv")
    expect(page.get_by_test_id("import-status")).to_have_text("Done")

    # the same file again: nothing new, and the page says so
    page.set_input_files("#im-file", str(path))
    page.click("#import-upload button[type=submit]")
    expect(page).to_have_url(re.compile(r"/imports/\d+\?repeat=1$"))
    expect(page.get_by_test_id("repeat")).to_contain_text("nothing new was created")
    page.goto(f"{live_server}/cases/{case_id}/imports")
    expect(page.locator("[data-testid=imports] tbody tr")).to_have_count(1)

    # a queued import (as when a Celery worker has yet to take it): the run page polls
    # its status and shows it complete once the job has run
    other = tmp_path / "second.csv"
    other.write_text(CSV.replace("+13125550103", "+13125550104"))
    with other.open("rb") as f:
        queued = imports.start_import(actor=actor_for(user), case_id=case_id, stream=f,
                                      kind="cdr", filename=other.name, dispatch=False)
    run_id = queued.run.id
    page.goto(f"{live_server}/imports/{run_id}")
    expect(page.get_by_test_id("run-status")).to_have_text("Queued")
    imports.run(run_id)
    expect(page.get_by_test_id("run-status")).to_have_text("Done")
    expect(page.get_by_test_id("rows-loaded")).to_have_text("3")
    expect(page.locator("#run-progress")).to_have_attribute("value", "100")
    expect(page.get_by_test_id("bad-rows")).to_contain_text("not-a-phone")
    assert not [e for e in errors if "Content Security Policy" in e]
