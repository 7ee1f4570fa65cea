"""Entity resolution against the real Neo4j: the projection follows a merge and an
unmerge through the outbox, ending exactly where it started, and a rebuild after a
merge gives the graph the incremental drain built."""
from __future__ import annotations

import pytest

from taskforce.graph import projection, service
from tests.factories_graph import (
    add_person,
    add_phone,
    make_team,
    pending_outbox,
)

pytestmark = pytest.mark.integration


@pytest.fixture()
def app_environ(app_environ, neo4j_service):
    return {**app_environ, **neo4j_service.env()}


@pytest.fixture(autouse=True)
def _clean(clean_graph):
    """Every test here starts from an empty graph (tests/conftest.py)."""


def test_the_graph_follows_merge_and_unmerge(app, runner):
    team = make_team()
    lead = team.lead[1]
    kw = {"actor": lead, "case_id": team.case_id}
    a = add_person(lead, team.case_id, "Jose Martinez", dob="1990-04-12", role="suspect")
    b = add_person(lead, team.case_id, "José Martínez", dob="1990-04-12", role="victim")
    phone = add_phone(lead, team.case_id, "(312) 555-0101")
    motel = service.add_entity(**kw, kind="location", label="Sunset Motel")
    service.add_link(**kw, source_id=a.id, target_id=phone.id, type="USES")
    service.add_link(**kw, source_id=b.id, target_id=phone.id, type="USES", count=3)
    service.add_link(**kw, source_id=b.id, target_id=motel.id, type="STAYED_AT")
    service.add_link(**kw, source_id=a.id, target_id=b.id, type="CONTROLS")
    assert pending_outbox() == []
    before = projection.snapshot()
    pseudonym = b.pseudonym

    merge = service.merge_entities(**kw, keep_id=a.id, absorb_id=b.id)
    assert pending_outbox() == []
    after = projection.snapshot()
    node_ids = {n["id"] for n in after["nodes"]}
    assert f"ent-{b.id}" not in node_ids and f"ent-{a.id}" in node_ids
    ends = {(lk["type"], lk["source"], lk["target"]) for lk in after["links"]}
    assert ends == {("USES", f"ent-{a.id}", f"ent-{phone.id}"),
                    ("STAYED_AT", f"ent-{a.id}", f"ent-{motel.id}")}
    kept = next(n for n in after["nodes"] if n["id"] == f"ent-{a.id}")
    # the victim's pseudonym came with her record: the kept node is a survivor now
    assert kept["props"]["survivor"] is True
    assert kept["props"]["case_labels"] == [pseudonym]
    # the phone she used is shielded in the graph too
    shielded = next(n for n in after["nodes"] if n["id"] == f"ent-{phone.id}")
    assert shielded["props"]["case_labels"] == [f"{pseudonym}'s phone"]

    assert runner.invoke(args=["graph", "rebuild"]).exit_code == 0
    assert projection.snapshot() == after  # rebuild == incremental, merged entity left out

    service.unmerge_entities(actor=lead, merge_id=merge.id)
    assert pending_outbox() == []
    assert projection.snapshot() == before
