"""The case's network graph in real Chromium, on the real Neo4j.

A small case is built through the services (as investigators would enter it),
projected into Neo4j by the outbox drain (in-process here), and the page is
driven with real clicks on the Cytoscape.js canvas: the nodes drawn, a node
expanded by clicking it, a path found between two picked nodes, a survivor
shown by pseudonym, and a user outside the case refused.

Needs the front-end libraries in taskforce/static/vendor/
(`scripts/services.py install assets`, part of `make services`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from playwright.sync_api import expect

from taskforce.graph import client, service
from taskforce.investigations import service as cases
from tests.e2e.conftest import Account, account, click_node, drawn, idle, open_graph, sign_in
from tests.factories import make_agency
from tests.factories_graph import add_person, add_phone, pending_outbox
from tests.factories_investigations import actor_for, make_case

pytestmark = pytest.mark.e2e

VENDOR = Path(__file__).resolve().parents[2] / "taskforce" / "static" / "vendor"


@pytest.fixture()
def app_environ(app_environ, neo4j_service):
    return {**app_environ, **neo4j_service.env()}


@pytest.fixture(autouse=True)
def _clean(clean_graph):
    """Every test here starts from an empty graph (the shared fixture)."""


@pytest.fixture()
def page(tall_page):
    return tall_page


@dataclass
class World:
    case_id: int
    other_case_id: int
    lead: Account
    investigator: Account
    outsider: Account
    ids: dict[str, int]
    survivor_pseudonym: str


def _adult_dob() -> str:
    today = date.today()
    return date(today.year - 24, today.month, min(today.day, 28)).isoformat()


@pytest.fixture()
def world(app) -> World:
    """Operation Kestrel: a trafficker, his phone, a survivor's phone, the survivor and a
    motel, in a chain (trafficker - phone - phone - survivor - motel). The investigator
    also leads Operation Wren, where the trafficker's phone (the same number, so the
    same entity) called one more person: expanding that phone on Kestrel's graph
    brings him in."""
    agency, other_agency = make_agency(), make_agency()
    lead = account(agency)
    investigator = account(agency)
    outsider = account(other_agency, roles=("investigator", "supervisor"))
    la, ia = actor_for(lead.user), actor_for(investigator.user)
    case_id = make_case(la, title="Operation Kestrel")
    cases.add_member(actor=la, case_id=case_id, user_id=investigator.user.id,
                     case_role="investigator")
    dante = add_person(la, case_id, "Dante Reyes", role="suspect")
    phone1 = add_phone(la, case_id, "(312) 555-0101")
    phone2 = add_phone(la, case_id, "(312) 555-0102")
    maria = add_person(la, case_id, "Maria Lopez", role="victim", dob=_adult_dob())
    motel = service.add_entity(actor=la, case_id=case_id, kind="location",
                               label="Starlite Motel", identifiers=[],
                               props={"address": "100 Main St, Houston, TX",
                                      "location_kind": "hotel_motel"})
    chain = [(dante, phone1, "USES", None), (phone1, phone2, "CALLED", "2025-03-02"),
             (maria, phone2, "USES", None), (maria, motel, "STAYED_AT", "2025-03-05")]
    for source, target, type_, when in chain:
        service.add_link(actor=la, case_id=case_id, source_id=source.id, target_id=target.id,
                         type=type_, first_seen=when, last_seen=when)
    other_case_id = make_case(ia, title="Operation Wren")
    same_phone = add_phone(ia, other_case_id, "+1 312 555 0101")
    assert same_phone.id == phone1.id  # one identifier, one entity
    tomas = add_person(ia, other_case_id, "Tomas Vega", role="suspect")
    service.add_link(actor=ia, case_id=other_case_id, source_id=tomas.id,
                     target_id=phone1.id, type="USES")
    assert pending_outbox() == []  # all of it is in Neo4j
    return World(case_id=case_id, other_case_id=other_case_id, lead=lead,
                 investigator=investigator, outsider=outsider,
                 ids={"dante": dante.id, "phone1": phone1.id, "phone2": phone2.id,
                      "maria": maria.id, "motel": motel.id, "tomas": tomas.id},
                 survivor_pseudonym=maria.pseudonym)


def test_the_case_network_is_drawn_with_survivors_by_pseudonym(live_server, page, world):
    sign_in(page, live_server, world.investigator)
    open_graph(page, live_server, world.case_id)
    nodes = drawn(page)
    ids = world.ids
    assert set(nodes) == {ids["dante"], ids["phone1"], ids["phone2"], ids["maria"], ids["motel"]}
    assert nodes[ids["dante"]] == "Dante Reyes"
    assert nodes[ids["maria"]] == world.survivor_pseudonym
    assert page.evaluate("() => window.networkGraph.cy.edges().length") == 4
    # the canvas really has pixels on it, and the nodes sit inside it
    box = page.locator("#network-canvas").bounding_box()
    assert box["width"] > 300 and box["height"] > 300
    for entity_id in nodes:
        x, y = page.evaluate("id => { const p = window.networkGraph.cy.getElementById('n' + id)"
                             ".renderedPosition(); return [p.x, p.y]; }", entity_id)
        assert 0 < x < box["width"] and 0 < y < box["height"]
    # colour by kind: a person and a phone are drawn differently
    colours = page.evaluate("ids => ids.map(id => window.networkGraph.cy.getElementById('n' + id)"
                            ".style('background-color'))", [ids["dante"], ids["phone1"]])
    assert colours[0] != colours[1]
    # the keyboard list of what is drawn, the timeline and the page text: never her name
    expect(page.get_by_test_id("graph-nodes")).to_contain_text(world.survivor_pseudonym)
    expect(page.get_by_test_id("timeline")).to_contain_text(world.survivor_pseudonym)
    assert "Maria Lopez" not in page.content()
    assert "Maria Lopez" not in page.locator("#graph-data").text_content()
    assert page.csp_violations == []


def test_the_case_lead_sees_the_survivor_by_name(live_server, page, world):
    sign_in(page, live_server, world.lead)
    open_graph(page, live_server, world.case_id)
    assert drawn(page)[world.ids["maria"]] == "Maria Lopez"


def test_clicking_a_node_expands_it(live_server, page, world):
    sign_in(page, live_server, world.investigator)
    open_graph(page, live_server, world.case_id)
    assert world.ids["tomas"] not in drawn(page)
    click_node(page, world.ids["phone1"])
    status = page.get_by_test_id("graph-status")
    expect(status).to_contain_text("1 new entity, 1 new link.")
    idle(page)
    assert drawn(page)[world.ids["tomas"]] == "Tomas Vega"
    expect(page.get_by_test_id("graph-nodes")).to_contain_text("Tomas Vega")
    assert page.evaluate("id => window.networkGraph.cy.getElementById('n' + id)"
                         ".hasClass('expanded')", world.ids["phone1"])
    # clicking picked it, too
    assert page.evaluate("() => window.networkGraph.picked()") == [world.ids["phone1"]]
    assert page.csp_violations == []


def test_a_filter_hides_kinds_and_expand_respects_it(live_server, page, world):
    sign_in(page, live_server, world.investigator)
    open_graph(page, live_server, world.case_id)
    page.locator("#graph-filters input[name=kinds][value=person]").uncheck()
    nodes = drawn(page)
    assert world.ids["dante"] not in nodes and world.ids["maria"] not in nodes
    assert world.ids["phone1"] in nodes
    # expanding with people filtered out brings no one in
    click_node(page, world.ids["phone1"])
    expect(page.get_by_test_id("graph-status")).to_contain_text("nothing more to show")
    assert page.evaluate("id => window.networkGraph.cy.getElementById('n' + id).empty()",
                         world.ids["tomas"])
    page.locator("#graph-filters button[type=reset]").click()
    page.wait_for_function("() => window.networkGraph.cy.nodes('.filtered').length === 0")
    assert world.ids["dante"] in drawn(page)


def test_pick_two_nodes_and_find_the_shortest_path(live_server, page, world):
    sign_in(page, live_server, world.investigator)
    open_graph(page, live_server, world.case_id)
    page.locator("#graph-expand-on-click").uncheck()  # pick only
    path_button = page.locator("#graph-path")
    click_node(page, world.ids["dante"])
    expect(path_button).to_be_disabled()
    click_node(page, world.ids["motel"])
    expect(path_button).to_be_enabled()
    expect(page.get_by_test_id("graph-selected")).to_contain_text("From: Dante Reyes")
    expect(page.get_by_test_id("graph-selected")).to_contain_text("To: Starlite Motel")
    path_button.click()
    status = page.get_by_test_id("graph-status")
    expect(status).to_contain_text("Path (4 links): Dante Reyes")
    expect(status).to_contain_text(world.survivor_pseudonym)
    assert "Maria Lopez" not in status.text_content()
    idle(page)
    on_path = page.evaluate("() => window.networkGraph.cy.nodes('.on-path')"
                            ".map(n => n.data('entity'))")
    ids = world.ids
    assert sorted(on_path) == sorted([ids["dante"], ids["phone1"], ids["phone2"], ids["maria"],
                                      ids["motel"]])
    assert page.evaluate("() => window.networkGraph.cy.edges('.on-path').length") == 4
    assert page.csp_violations == []


def test_a_user_outside_the_case_gets_404(live_server, page, world):
    sign_in(page, live_server, world.outsider)
    resp = page.goto(f"{live_server}/cases/{world.case_id}/network")
    assert resp.status == 404
    assert page.locator("#graph-data").count() == 0
    assert "Dante Reyes" not in page.content()
    # and the graph questions the page asks give them nothing either
    resp = page.goto(f"{live_server}/api/v1/graph/cases/{world.case_id}/key-players")
    assert resp.status == 404
    resp = page.goto(f"{live_server}/api/v1/graph/expand?entity_id={world.ids['phone1']}")
    assert resp.status == 200
    assert resp.json()["nodes"] == [] and resp.json()["edges"] == []
    resp = page.goto(f"{live_server}/api/v1/graph/shortest-path?source={world.ids['dante']}"
                     f"&target={world.ids['motel']}")
    assert resp.status == 200 and resp.json()["path"] is None


def test_an_entity_added_with_the_form_is_drawn(live_server, page, world):
    sign_in(page, live_server, world.investigator)
    open_graph(page, live_server, world.case_id)
    form = page.get_by_test_id("add-entity")
    form.locator("#entity-kind").select_option("vehicle")
    form.locator("#entity-label").fill("White Chevrolet Tahoe")
    form.locator("#identifier-kind-0").select_option("vehicle_plate")
    form.locator("#identifier-value-0").fill("TX:ABC 1234")
    form.locator("button[type=submit]").click()
    expect(page.get_by_role("alert")).to_contain_text("Entity added.")
    page.wait_for_function("() => window.networkGraph !== undefined")
    page.evaluate("() => window.networkGraph.ready")
    labels = set(drawn(page).values())
    assert "White Chevrolet Tahoe" in labels and "Dante Reyes" in labels
    link = page.get_by_test_id("add-link")
    link.locator("#link-source").select_option(label="Dante Reyes (Person)")
    link.locator("#link-type").select_option("OWNS")
    link.locator("#link-target").select_option(label="White Chevrolet Tahoe (Vehicle)")
    link.locator("button[type=submit]").click()
    expect(page.get_by_role("alert")).to_contain_text("Link recorded.")
    page.wait_for_function("() => window.networkGraph !== undefined")
    page.evaluate("() => window.networkGraph.ready")
    types = page.evaluate("() => window.networkGraph.cy.edges().map(e => e.data('type'))")
    assert sorted(types) == ["CALLED", "OWNS", "STAYED_AT", "USES", "USES"]


def test_without_the_graph_library_the_page_still_works(live_server, page, world, monkeypatch):
    from taskforce.graph import views

    monkeypatch.setattr(views, "GRAPH_SCRIPTS", ("vendor/not-installed/cytoscape.min.js",))
    sign_in(page, live_server, world.investigator)
    resp = page.goto(f"{live_server}/cases/{world.case_id}/network")
    assert resp.status == 200
    expect(page.get_by_test_id("graph-missing")).to_be_visible()
    expect(page.get_by_test_id("graph-missing")).to_contain_text(
        "graph library is not installed")
    assert page.locator("#network-canvas").count() == 0
    # the tables, the timeline and the forms are all still there
    expect(page.get_by_test_id("entities")).to_contain_text("Dante Reyes")
    expect(page.get_by_test_id("timeline")).to_contain_text("STAYED_AT")
    expect(page.get_by_test_id("add-entity")).to_be_visible()
    assert page.csp_violations == []


def test_key_players_and_communities_are_highlighted(live_server, page, world):
    sign_in(page, live_server, world.investigator)
    open_graph(page, live_server, world.case_id)
    page.locator("#graph-key-players").click()
    # a chain of five: the middle one (the survivor's phone) lies on most shortest paths
    middle = drawn(page)[world.ids["phone2"]]
    key_list = page.get_by_test_id("key-players")
    expect(key_list.locator("li").first).to_contain_text(middle)
    expect(page.get_by_test_id("graph-status")).to_contain_text("Key players: " + middle)
    sizes = page.evaluate("() => Object.fromEntries(window.networkGraph.cy.nodes('.key-player')"
                          ".map(n => [n.data('entity'), n.data('size')]))")
    top = sizes.pop(str(world.ids["phone2"]))
    assert sizes and all(top > s for s in sizes.values())
    assert str(world.ids["tomas"]) not in sizes  # another case's entity is not a key player here

    page.locator("#graph-communities").click()
    expect(page.get_by_test_id("graph-status")).to_contain_text("communities (leiden")
    answer = page.evaluate(f"""() => fetch('/api/v1/graph/cases/{world.case_id}/communities')
                                     .then(r => r.json())""")
    colours = page.evaluate("() => Object.fromEntries(window.networkGraph.cy.nodes()"
                            ".map(n => [n.data('entity'), n.data('community_color')]))")
    # same community, same colour; different communities, different colours
    for a, ca in answer["membership"].items():
        for b, cb in answer["membership"].items():
            assert (colours[a] == colours[b]) == (ca == cb)
    assert page.locator("#graph-legend li").count() == len(answer["communities"])
    page.locator("#graph-clear").click()
    assert page.evaluate("() => window.networkGraph.cy.nodes('[community_color]').length") == 0


def test_date_window_and_confidence_filters(live_server, page, world):
    la = actor_for(world.lead.user)
    service.add_link(actor=la, case_id=world.case_id, source_id=world.ids["dante"],
                     target_id=world.ids["motel"], type="ASSOCIATED_WITH", confidence="0.4")
    sign_in(page, live_server, world.investigator)
    open_graph(page, live_server, world.case_id)

    def shown_types():
        return sorted(page.evaluate("() => window.networkGraph.cy.edges().not('.filtered')"
                                    ".map(e => e.data('type'))"))

    assert shown_types() == ["ASSOCIATED_WITH", "CALLED", "STAYED_AT", "USES", "USES"]
    page.fill("#graph-min-confidence", "0.5")
    page.dispatch_event("#graph-min-confidence", "change")
    assert shown_types() == ["CALLED", "STAYED_AT", "USES", "USES"]
    # active from 4 March: the call of 2 March is out, and so are undated links
    page.fill("#graph-since", "2025-03-04")
    page.dispatch_event("#graph-since", "change")
    assert shown_types() == ["STAYED_AT"]
    page.fill("#graph-until", "2025-03-01")
    page.dispatch_event("#graph-until", "change")
    expect(page.get_by_test_id("graph-status")).to_contain_text("ends before it starts")
    page.locator("#graph-filters button[type=reset]").click()
    page.wait_for_function("() => window.networkGraph.cy.edges('.filtered').length === 0")
    page.locator("#graph-filters input[name=link_types][value=USES]").uncheck()
    assert shown_types() == ["ASSOCIATED_WITH", "CALLED", "STAYED_AT"]


def test_export_png_and_show_a_timeline_link_in_the_graph(live_server, page, world, tmp_path):
    sign_in(page, live_server, world.investigator)
    open_graph(page, live_server, world.case_id)
    with page.expect_download() as info:
        page.locator("#graph-png").click()
    download = info.value
    assert download.suggested_filename.endswith("-network.png")
    saved = tmp_path / "graph.png"
    download.save_as(saved)
    data = saved.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 2000

    row = page.get_by_test_id("timeline").locator("tr", has_text="STAYED_AT")
    row.get_by_role("button", name="Show in graph").click()
    shown = page.evaluate("() => window.networkGraph.cy.edges('.shown').map(e => e.data('type'))")
    assert shown == ["STAYED_AT"]
    assert page.csp_violations == []


def test_with_neo4j_down_the_graph_draws_and_expand_says_why(live_server, page, world, app):
    from tests.factories_graph import closed_bolt_uri

    real_uri = app.config["NEO4J_URI"]
    app.config["NEO4J_URI"] = closed_bolt_uri()  # the graph engine "down"
    client.close(app)
    try:
        sign_in(page, live_server, world.investigator)
        open_graph(page, live_server, world.case_id)  # drawn from the case record
        assert drawn(page)[world.ids["dante"]] == "Dante Reyes"
        click_node(page, world.ids["dante"])
        status = page.get_by_test_id("graph-status")
        # a 503 from the API, or the page's own 20 s limit while the driver still retries
        expect(status).to_contain_text("Could not expand Dante Reyes", timeout=30_000)
        expect(status).to_contain_text(re.compile(r"not reachable|did not answer within 20"))
        expect(status).to_have_class(re.compile(r"\berror\b"))
        assert len(drawn(page)) == 5
    finally:
        app.config["NEO4J_URI"] = real_uri
        client.close(app)


def test_shared_connections_of_two_picked_nodes(live_server, page, world):
    sign_in(page, live_server, world.investigator)
    open_graph(page, live_server, world.case_id)
    page.locator("#graph-expand-on-click").uncheck()
    click_node(page, world.ids["dante"])
    click_node(page, world.ids["phone2"])
    page.locator("#graph-shared").click()
    # the trafficker's phone called the survivor's phone: it is what the two share
    status = page.get_by_test_id("graph-status")
    expect(status).to_contain_text("Shared connections of Dante Reyes and ")
    expect(status).to_contain_text("+1 312-555-0101")
    idle(page)
    lit = page.evaluate("() => window.networkGraph.cy.nodes('.on-path').map(n => n.data('entity'))")
    assert sorted(lit) == sorted([world.ids["dante"], world.ids["phone2"], world.ids["phone1"]])


def test_follow_calls_forward_in_time_from_a_picked_phone(live_server, page, world):
    la = actor_for(world.lead.user)
    phone3 = add_phone(la, world.case_id, "(312) 555-0103")
    phone4 = add_phone(la, world.case_id, "(312) 555-0104")
    for source, target, when in ((world.ids["phone2"], phone3.id, "2025-03-10"),
                                 # before the call that reached phone 2: not a chain
                                 (world.ids["phone2"], phone4.id, "2025-02-20")):
        service.add_link(actor=la, case_id=world.case_id, source_id=source, target_id=target,
                         type="CALLED", first_seen=when, last_seen=when)
    sign_in(page, live_server, world.investigator)
    open_graph(page, live_server, world.case_id)
    page.locator("#graph-expand-on-click").uncheck()
    flow = page.locator("#graph-flow")
    expect(flow).to_be_disabled()
    click_node(page, world.ids["phone1"])
    flow.click()
    status = page.get_by_test_id("graph-status")
    expect(status).to_contain_text("2 chains going forward in time from +1 312-555-0101")
    expect(status).to_contain_text("+1 312-555-0103 (CALLED 2025-03-02, CALLED 2025-03-10)")
    idle(page)
    lit = page.evaluate("() => window.networkGraph.cy.nodes('.on-path').map(n => n.data('entity'))")
    assert sorted(lit) == sorted([world.ids["phone1"], world.ids["phone2"], phone3.id])
    assert phone4.id not in lit
