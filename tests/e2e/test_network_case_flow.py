"""An investigator's whole first hour on a case, in real Chromium, on the real Neo4j.

Signs in, opens a case on the page, imports a carrier's call records on the case's
import page (the file is made here: four phones calling down a chain A-B-C-D, and a
longer way round from A to D through three other phones), waits for the import to
finish, opens the graph, expands the last phone of the chain by clicking it (it
brings in a phone from the investigator's other case), picks the two ends of the
chain and finds the path: the page lights up A-B-C-D and nothing of the way round.
"""
from __future__ import annotations

import csv
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from taskforce.extensions import db
from taskforce.graph import service as graph
from taskforce.graph.models import Identifier
from tests.e2e.conftest import account, click_node, drawn, idle, open_graph, sign_in
from tests.factories import make_agency
from tests.factories_graph import add_phone, pending_outbox
from tests.factories_investigations import actor_for, make_case

pytestmark = pytest.mark.e2e

# The chain the test is about, and a longer way round from A to D that a wrong
# "path" (any path, not the shortest) would take.
CHAIN = {"A": "+13125550101", "B": "+13125550102", "C": "+13125550103", "D": "+13125550104"}
ROUND = {"E": "+13125550105", "F": "+13125550106", "G": "+13125550107"}
ELSEWHERE = "+13125550199"  # in the investigator's other case only, called by D
CALLS = [("A", "B", "2025-03-01T10:00:00", 60), ("A", "B", "2025-03-01T18:30:00", 45),
         ("B", "C", "2025-03-02T09:15:00", 120), ("C", "D", "2025-03-02T21:40:00", 30),
         ("D", "C", "2025-03-03T08:05:00", 15),
         ("A", "E", "2025-03-04T11:00:00", 20), ("E", "F", "2025-03-04T12:00:00", 20),
         ("F", "G", "2025-03-04T13:00:00", 20), ("G", "D", "2025-03-04T14:00:00", 20)]


def label(number: str) -> str:
    """How the page writes an E.164 number: +1 312-555-0101."""
    return f"+1 {number[2:5]}-{number[5:8]}-{number[8:]}"


@pytest.fixture()
def app_environ(app_environ, neo4j_service):
    return {**app_environ, **neo4j_service.env()}


def write_call_records(path) -> None:
    numbers = {**CHAIN, **ROUND}
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["caller", "callee", "start", "duration", "call_type"])
        for caller, callee, start, seconds in CALLS:
            out.writerow([numbers[caller], numbers[callee], start, seconds, "voice"])


def entity_ids(numbers: dict[str, str]) -> dict[str, int]:
    """The entity each phone number became (one identifier, one entity)."""
    db.session.expire_all()
    found = {}
    for name, number in numbers.items():
        found[name] = db.session.scalars(select(Identifier.entity_id).where(
            Identifier.kind == "phone", Identifier.value == number)).one()
    return found


def test_build_a_case_import_calls_expand_and_find_the_path(
        app, live_server, clean_graph, tall_page, tmp_path):
    page = tall_page
    investigator = account(make_agency())
    # The investigator's earlier case, entered through the service: phone D called a
    # phone that is in no other case. Expanding D on the new case's graph brings it in.
    me = actor_for(investigator.user)
    earlier = make_case(me, title="Operation Wren")
    d_before = add_phone(me, earlier, CHAIN["D"])
    elsewhere = add_phone(me, earlier, ELSEWHERE)
    graph.add_link(actor=me, case_id=earlier, source_id=d_before.id, target_id=elsewhere.id,
                   type="CALLED", first_seen="2025-02-20", last_seen="2025-02-20")
    assert pending_outbox() == []  # in Neo4j already

    sign_in(page, live_server, investigator)

    # open the case on the page
    page.goto(f"{live_server}/cases/new")
    page.fill("#title", "Operation Heron")
    page.check("input[name=offences][value=sex_trafficking]")
    page.fill("#summary", "Burner phones calling down a chain; carrier return received.")
    page.click("main form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/cases/\d+$"))
    expect(page.get_by_role("alert")).to_contain_text("opened")
    case_id = int(re.search(r"/cases/(\d+)$", page.url).group(1))
    number = page.get_by_test_id("case-number").text_content()
    expect(page.locator("h1")).to_contain_text("Operation Heron")

    # import the carrier's return on the case's import page
    records = tmp_path / "carrier-return-heron.csv"
    write_call_records(records)
    page.get_by_role("link", name="Imports").click()
    expect(page).to_have_url(re.compile(rf"/cases/{case_id}/imports$"))
    expect(page.get_by_test_id("case-number")).to_have_text(number)
    expect(page.get_by_test_id("imports")).to_contain_text("Nothing imported yet")
    page.set_input_files("#im-file", str(records))
    page.select_option("#im-kind", "cdr")
    page.click("#import-upload button[type=submit]")
    expect(page).to_have_url(re.compile(r"/imports/\d+$"))
    expect(page.get_by_test_id("run-status")).to_have_text("Done", timeout=30_000)
    expect(page.get_by_test_id("rows-loaded")).to_have_text(str(len(CALLS)))
    expect(page.get_by_test_id("rows-bad")).to_have_text("0")
    # seven phones (D was already an entity: attached, not made again); a link has a
    # direction, so A called B twice is one link and C-D, D-C are two: eight links
    expect(page.locator("#run-result")).to_contain_text("6 entities created, 1 attached")
    expect(page.locator("#run-result")).to_contain_text("8 links created")
    assert pending_outbox() == []  # the import's outbox rows were drained into Neo4j

    ids = entity_ids({**CHAIN, **ROUND, "X": ELSEWHERE})
    assert ids["D"] == d_before.id and ids["X"] == elsewhere.id

    # the graph: the case's network as imported, the other case's phone not yet
    open_graph(page, live_server, case_id)
    nodes = drawn(page)
    assert set(nodes) == {ids[n] for n in (*CHAIN, *ROUND)}
    assert nodes[ids["A"]] == label(CHAIN["A"])
    assert page.evaluate("() => window.networkGraph.cy.edges().length") == 8

    # expand D by clicking it: the call to the phone of the other case comes in
    click_node(page, ids["D"])
    status = page.get_by_test_id("graph-status")
    expect(status).to_contain_text(f"Expanded {label(CHAIN['D'])}: 1 new entity, 1 new link.")
    idle(page)
    assert drawn(page)[ids["X"]] == label(ELSEWHERE)
    assert page.evaluate("id => window.networkGraph.cy.getElementById('n' + id)"
                         ".hasClass('expanded')", ids["D"])
    new_edge = page.evaluate("id => window.networkGraph.cy.getElementById('n' + id)"
                             ".connectedEdges().map(e => e.data('type'))", ids["X"])
    assert new_edge == ["CALLED"]

    # pick the two ends of the chain (clicking only picks now) and find the path
    page.locator("#graph-expand-on-click").uncheck()
    click_node(page, ids["D"])  # the click that expanded it picked it too: unpick
    assert page.evaluate("() => window.networkGraph.picked()") == []
    click_node(page, ids["A"])
    click_node(page, ids["D"])
    assert page.evaluate("() => window.networkGraph.picked()") == [ids["A"], ids["D"]]
    selected = page.get_by_test_id("graph-selected")
    expect(selected).to_contain_text(f"From: {label(CHAIN['A'])}")
    expect(selected).to_contain_text(f"To: {label(CHAIN['D'])}")
    page.locator("#graph-path").click()
    expect(status).to_contain_text("Path (3 links): " + " → ".join(
        label(CHAIN[n]) for n in "ABCD"))
    idle(page)

    on_path = page.evaluate("() => window.networkGraph.cy.nodes('.on-path')"
                            ".map(n => n.data('entity'))")
    assert sorted(on_path) == sorted(ids[n] for n in "ABCD")
    lit_edges = page.evaluate("() => window.networkGraph.cy.edges('.on-path')"
                              ".map(e => [e.source().data('entity'), e.target().data('entity'),"
                              " e.data('type')])")
    assert len(lit_edges) == 3
    assert {frozenset(e[:2]) for e in lit_edges} == {
        frozenset((ids[a], ids[b])) for a, b in ("AB", "BC", "CD")}
    assert {e[2] for e in lit_edges} == {"CALLED"}
    # the way round and the other case's phone are faded, not on the path
    faded = page.evaluate("() => window.networkGraph.cy.nodes('.faded')"
                          ".map(n => n.data('entity'))")
    assert sorted(faded) == sorted(ids[n] for n in ("E", "F", "G", "X"))
    assert page.evaluate("() => window.networkGraph.cy.edges('.on-path.faded').length") == 0
    assert page.csp_violations == []
