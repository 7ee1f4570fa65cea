"""Merging duplicate people from the network page, in real Chromium, on the real Neo4j.

The same man was entered twice (two spellings, one date of birth), each record with
its own phone. The investigator opens the case's network page, sees the pair under
"Possible duplicates", lights them up on the graph, merges them with the page's form:
the graph draws one person with both phones. Undoing the merge from "Merges in this
case" draws two again.

Needs the front-end libraries in taskforce/static/vendor/
(`scripts/services.py install assets`, part of `make services`).
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from taskforce.extensions import db
from taskforce.graph import service
from taskforce.graph.models import EntityMerge
from tests.e2e.conftest import account, drawn, open_graph, sign_in
from tests.factories import make_agency
from tests.factories_graph import add_person, add_phone, pending_outbox
from tests.factories_investigations import actor_for, make_case

pytestmark = pytest.mark.e2e


@pytest.fixture()
def app_environ(app_environ, neo4j_service):
    return {**app_environ, **neo4j_service.env()}


@pytest.fixture(autouse=True)
def _clean(clean_graph):
    """Every test here starts from an empty graph (the shared fixture)."""


def _wait_for_graph(page) -> None:
    page.wait_for_function("() => window.networkGraph !== undefined")
    page.evaluate("() => window.networkGraph.ready")


def test_merge_two_records_of_one_man_then_undo(app, live_server, tall_page):
    page = tall_page
    investigator = account(make_agency())
    me = actor_for(investigator.user)
    case_id = make_case(me, title="Operation Kestrel")
    dante = add_person(me, case_id, "Dante Reyes", role="suspect", dob="1990-04-12")
    again = add_person(me, case_id, "Reyes, Dante", dob="1990-04-12")
    phone1 = add_phone(me, case_id, "(312) 555-0101")
    phone2 = add_phone(me, case_id, "(312) 555-0102")
    for person, phone in ((dante, phone1), (again, phone2)):
        service.add_link(actor=me, case_id=case_id, source_id=person.id, target_id=phone.id,
                         type="USES")

    sign_in(page, live_server, investigator)
    open_graph(page, live_server, case_id)
    nodes = drawn(page)
    assert set(nodes) == {dante.id, again.id, phone1.id, phone2.id}
    expect(page.get_by_test_id("duplicates")).to_have_count(0)  # looked for on request
    page.get_by_test_id("look-for-duplicates").click()
    _wait_for_graph(page)

    pair = page.locator(f'[data-pair="{dante.id},{again.id}"]')
    expect(pair).to_contain_text("Similar name, same date of birth")
    pair.get_by_role("button", name="Show in graph").click()
    expect(page.get_by_test_id("graph-status")).to_contain_text(
        "Possible duplicates: Dante Reyes and Reyes, Dante")

    # keep Dante Reyes (the default), say why, merge
    expect(pair.get_by_role("radio", name=re.compile("^Dante Reyes"))).to_be_checked()
    pair.get_by_label("Why they are the same").fill("Same man: one DOB, two spellings")
    pair.get_by_role("button", name="Merge").click()
    expect(page).to_have_url(re.compile(rf"/cases/{case_id}/network\?duplicates=1#duplicates$"))
    expect(page.locator(".flash.success")).to_contain_text("Merged")
    _wait_for_graph(page)
    nodes = drawn(page)
    assert set(nodes) == {dante.id, phone1.id, phone2.id}  # one person now
    assert nodes[dante.id] == "Dante Reyes"
    assert page.evaluate(  # both phones hang off him
        "id => window.networkGraph.cy.getElementById('n' + id).connectedEdges().length",
        dante.id) == 2
    expect(page.get_by_test_id("no-duplicates")).to_be_visible()
    merge = db.session.scalars(select(EntityMerge)).one()
    row = page.locator(f'[data-merge-id="{merge.id}"]')
    expect(row).to_contain_text("In force")
    expect(row).to_contain_text("Reyes, Dante")
    expect(row).to_contain_text(investigator.user.username)

    row.get_by_role("button", name="Undo merge").click()
    expect(page).to_have_url(re.compile(rf"/cases/{case_id}/network#merges$"))
    _wait_for_graph(page)
    nodes = drawn(page)
    assert set(nodes) == {dante.id, again.id, phone1.id, phone2.id}  # two again
    assert nodes[again.id] == "Reyes, Dante"
    expect(page.locator(f'[data-merge-id="{merge.id}"]')).to_contain_text("Undone")
    page.get_by_test_id("look-for-duplicates").click()
    expect(page.locator(f'[data-pair="{dante.id},{again.id}"]')).to_be_visible()
    assert pending_outbox() == []  # the graph engine followed both changes
    assert page.csp_violations == []
