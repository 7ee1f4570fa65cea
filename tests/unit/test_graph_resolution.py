"""Entity resolution on SQLite with Neo4j unreachable: suggested duplicates (within what
the reader may see), merge with audit, and an unmerge that restores both entities
exactly. The projection following a merge against the real Neo4j is in
tests/integration/test_graph_resolution_graph.py.
"""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from taskforce.audit.models import AuditEvent
from taskforce.errors import Conflict, Forbidden, Invalid, NotFound
from taskforce.extensions import db
from taskforce.graph import service
from taskforce.graph.models import CaseEntity, Entity, EntityMerge, GraphOutbox, Identifier, Link
from tests import factories_graph
from tests.factories_graph import (
    add_person,
    add_phone,
)
from tests.factories_investigations import api_caller, make_case, person

# shared fixtures (tests/factories_graph.py): Neo4j unreachable, the graph registered, a team
neo4j_down_environ = factories_graph.neo4j_down_environ
graph_registered = factories_graph.graph_registered
team_fixture = factories_graph.team_fixture


def _state() -> dict:
    """Every row resolution may touch, as plain values (updated_at left out)."""
    db.session.expire_all()
    return {
        "entities": sorted((e.id, e.kind, e.pseudonym, e.merged_into_id)
                           for e in db.session.scalars(select(Entity))),
        "identifiers": sorted((i.id, i.entity_id, i.kind, i.value)
                              for i in db.session.scalars(select(Identifier))),
        "memberships": sorted((ce.id, ce.case_id, ce.entity_id, ce.role, ce.label,
                               repr(sorted(ce.props.items())), repr(ce.identifier_keys))
                              for ce in db.session.scalars(select(CaseEntity))),
        "links": sorted((lk.id, lk.case_id, lk.source_id, lk.target_id, lk.type,
                         lk.provenance_kind, lk.provenance_ref, lk.count, lk.confidence,
                         lk.first_seen, lk.last_seen, lk.amount)
                        for lk in db.session.scalars(select(Link))),
    }


# Suggestions -----------------------------------------------------------------------------

def test_a_phone_entered_by_label_is_suggested_as_the_phone_with_that_number(app, team):
    lead = team.lead[1]
    real = add_phone(lead, team.case_id, "(312) 555-0199")
    typed = service.add_entity(actor=lead, case_id=team.case_id, kind="phone",
                               label="312.555.0199")
    other = add_phone(lead, team.case_id, "(312) 555-0100")
    found = service.suggest_duplicates(actor=lead, case_id=team.case_id)
    pairs = {(s.entities, s.reason) for s in found.suggestions}
    assert pairs == {((real.id, typed.id), "same_identifier")}
    assert other.id not in {i for s in found.suggestions for i in s.entities}


def test_people_born_the_same_day_with_similar_names_are_suggested(app, team):
    lead = team.lead[1]
    a = add_person(lead, team.case_id, "José Martínez", dob="1990-04-12")
    b = add_person(lead, team.case_id, "Jose Martinez", dob="1990-04-12")
    c = add_person(lead, team.case_id, "Martinez, Jose", dob="1990-04-12")
    add_person(lead, team.case_id, "Jose Martinez", dob="1991-04-12")  # other DOB: no
    add_person(lead, team.case_id, "Kevin Brown", dob="1990-04-12")  # other name: no
    found = service.suggest_duplicates(actor=lead, case_id=team.case_id)
    got = {s.entities: s for s in found.suggestions}
    assert set(got) == {tuple(sorted(p)) for p in ((a.id, b.id), (a.id, c.id), (b.id, c.id))}
    assert all(s.reason == "similar_name_same_dob" and 0.85 <= s.score <= 1 for s in got.values())
    assert got[(a.id, b.id)].score == 1.0  # accents folded


def test_suggestions_never_reach_into_a_case_the_reader_may_not_read(app, team):
    lead = team.lead[1]
    mine = add_person(lead, team.case_id, "Jose Martinez", dob="1990-04-12")
    _, other = person(agency=team.other_agency)
    other_case = make_case(other, title="Operation Wren")
    theirs = add_person(other, other_case, "José Martinez", dob="1990-04-12")
    assert service.suggest_duplicates(actor=lead, case_id=team.case_id).suggestions == []
    # the other lead, who may read only their case, sees nothing of ours either
    assert service.suggest_duplicates(actor=other, case_id=other_case).suggestions == []
    # and an outsider cannot ask about our case at all
    with pytest.raises(NotFound):
        service.suggest_duplicates(actor=team.outsider[1], case_id=team.case_id)
    assert mine.id != theirs.id


# Merge and unmerge -------------------------------------------------------------------------

@pytest.fixture()
def twins(team):
    """Two records of one man, each with links, one of them also in a second case of
    the same team, with a link between the two and a link both state the same way."""
    lead = team.lead[1]
    a = add_person(lead, team.case_id, "Jose Martinez", dob="1990-04-12", role="suspect",
                   identifiers=[("person", "Jose Martinez|1990-04-12")])
    b = add_person(lead, team.case_id, "José Martínez", dob="1990-04-12",
                   identifiers=[("person", "Jose Martinez Jr|1990-04-12")], notes="alias Tito")
    second = make_case(lead, title="Operation Heron")
    service.add_entity(actor=lead, case_id=second, kind="person", label="Tito",
                       identifiers=[("person", "Jose Martinez Jr|1990-04-12")])
    phone = add_phone(lead, team.case_id, "(312) 555-0101")
    motel = service.add_entity(actor=lead, case_id=team.case_id, kind="location",
                               label="Sunset Motel")
    kw = {"actor": lead, "case_id": team.case_id}
    service.add_link(**kw, source_id=a.id, target_id=phone.id, type="USES", count=2)
    service.add_link(**kw, source_id=b.id, target_id=phone.id, type="USES", count=5,
                     first_seen="2025-01-01")  # the same statement: folded on merge
    service.add_link(**kw, source_id=b.id, target_id=motel.id, type="STAYED_AT",
                     first_seen="2025-02-01", last_seen="2025-02-03")
    service.add_link(**kw, source_id=a.id, target_id=b.id, type="ASSOCIATED_WITH")
    return {"a": a.id, "b": b.id, "phone": phone.id, "motel": motel.id, "second": second}


def test_a_merge_moves_identifiers_memberships_and_links_and_is_audited(app, team, twins):
    lead = team.lead[1]
    merge = service.merge_entities(actor=lead, case_id=team.case_id, keep_id=twins["a"],
                                   absorb_id=twins["b"], reason="same DOB, same phone")
    db.session.expire_all()
    kept, gone = db.session.get(Entity, twins["a"]), db.session.get(Entity, twins["b"])
    assert gone.merged_into_id == kept.id and gone.identifiers == [] and gone.case_links == []
    assert sorted(i.value for i in kept.identifiers) == [
        "JOSE|JR|MARTINEZ|1990-04-12", "JOSE|MARTINEZ|1990-04-12"]
    assert kept.case_ids == sorted([team.case_id, twins["second"]])
    here = kept.in_case(team.case_id)
    assert (here.label, here.role, here.props["notes"]) == ("Jose Martinez", "suspect",
                                                             "alias Tito")
    assert kept.in_case(twins["second"]).label == "Tito"
    links = db.session.scalars(select(Link).order_by(Link.id)).all()
    assert {(lk.source_id, lk.target_id, lk.type, lk.count) for lk in links} == {
        (kept.id, twins["phone"], "USES", 5), (kept.id, twins["motel"], "STAYED_AT", 1)}
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "entity.merge")).one()
    assert json.loads(event.details)["merge_id"] == merge.id and event.case_id == team.case_id
    queued = {(r.op, r.object_id) for r in db.session.scalars(
        select(GraphOutbox).where(GraphOutbox.processed_at.is_(None)))}
    assert {("upsert_entity", kept.id), ("upsert_entity", gone.id)} <= queued
    with pytest.raises(NotFound):
        service.get_entity(actor=lead, entity_id=gone.id)
    listed = service.list_entities(actor=lead, case_id=team.case_id)
    assert gone.id not in {ce.entity_id for ce in listed.items}


def test_unmerge_restores_both_exactly(app, team, twins):
    lead = team.lead[1]
    before = _state()
    merge = service.merge_entities(actor=lead, case_id=team.case_id, keep_id=twins["a"],
                                   absorb_id=twins["b"])
    assert _state() != before
    service.unmerge_entities(actor=lead, merge_id=merge.id)
    assert _state() == before
    assert db.session.get(EntityMerge, merge.id).undone_at is not None
    with pytest.raises(Conflict):
        service.unmerge_entities(actor=lead, merge_id=merge.id)
    assert db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "entity.unmerge")).one().details == json.dumps(
            {"kept": twins["a"], "merge_id": merge.id, "restored": twins["b"]},
            sort_keys=True, separators=(",", ":"))


def test_a_survivors_pseudonym_follows_the_merge_and_comes_back(app, team):
    lead = team.lead[1]
    plain = add_person(lead, team.case_id, "Maria Lopez", dob="2009-05-05")
    victim = add_person(lead, team.case_id, "María López", dob="2009-05-05", role="victim")
    before = _state()
    merge = service.merge_entities(actor=lead, case_id=team.case_id, keep_id=plain.id,
                                   absorb_id=victim.id)
    db.session.expire_all()
    assert db.session.get(Entity, plain.id).pseudonym == before["entities"][1][2]
    service.unmerge_entities(actor=lead, merge_id=merge.id)
    assert _state() == before


def test_merging_needs_contribute_access_to_every_case_involved(app, team):
    lead = team.lead[1]
    a = add_phone(lead, team.case_id, "(312) 555-0101")
    b = service.add_entity(actor=lead, case_id=team.case_id, kind="phone", label="312 555 0101")
    _, other = person(agency=team.other_agency)
    other_case = make_case(other, title="Operation Wren")
    add_phone(other, other_case, "312-555-0101")  # the same entity a, in a case we cannot change
    before = _state()
    with pytest.raises(Forbidden):
        service.merge_entities(actor=lead, case_id=team.case_id, keep_id=b.id, absorb_id=a.id)
    assert _state() == before
    # a read-only partner cannot merge either, and an outsider learns nothing
    with pytest.raises(Forbidden):
        service.merge_entities(actor=team.partner_investigator[1], case_id=team.case_id,
                               keep_id=a.id, absorb_id=b.id)
    with pytest.raises(NotFound):
        service.merge_entities(actor=team.outsider[1], case_id=team.case_id, keep_id=a.id,
                               absorb_id=b.id)


@pytest.mark.parametrize("change,field", [
    ({"keep_id": None}, "keep_id"),
    ({"absorb_id": "x"}, "absorb_id"),
    ({"absorb_id": 99999}, "absorb_id"),
    ({"reason": "y" * 501}, "reason"),
])
def test_bad_merge_input_is_invalid_and_writes_nothing(app, team, change, field):
    lead = team.lead[1]
    a = add_phone(lead, team.case_id, "(312) 555-0101")
    b = service.add_entity(actor=lead, case_id=team.case_id, kind="phone", label="x")
    before = _state()
    with pytest.raises(Invalid) as err:
        service.merge_entities(**{"actor": lead, "case_id": team.case_id, "keep_id": a.id,
                                  "absorb_id": b.id, **change})
    assert field in err.value.fields
    assert _state() == before


def test_a_person_cannot_be_merged_into_a_phone(app, team):
    lead = team.lead[1]
    a = add_phone(lead, team.case_id, "(312) 555-0101")
    b = add_person(lead, team.case_id, "Kevin Brown")
    with pytest.raises(Invalid) as err:
        service.merge_entities(actor=lead, case_id=team.case_id, keep_id=a.id, absorb_id=b.id)
    assert "absorb_id" in err.value.fields


def test_resolution_over_the_api(app, team):
    lead_user = team.lead[0]
    lead = team.lead[1]
    a = add_person(lead, team.case_id, "Jose Martinez", dob="1990-04-12")
    b = add_person(lead, team.case_id, "José Martinez", dob="1990-04-12")
    api = api_caller(app, lead_user)
    url = f"/api/v1/graph/cases/{team.case_id}"
    got = api.get(f"{url}/duplicates")
    assert got.status_code == 200, got.json
    [s] = got.json["suggestions"]
    assert [e["id"] for e in s["entities"]] == [a.id, b.id]
    assert s["reason"] == "similar_name_same_dob"
    bad = api.post(f"{url}/merges", {"keep_id": a.id})
    assert bad.status_code == 422 and "absorb_id" in bad.json["error"]["fields"]
    done = api.post(f"{url}/merges", {"keep_id": a.id, "absorb_id": b.id, "reason": "same"})
    assert done.status_code == 201, done.json
    assert [e["id"] for e in done.json["entities"]] == [a.id]
    assert api.get(f"{url}/duplicates").json["suggestions"] == []
    undo = api.post(f"/api/v1/graph/merges/{done.json['id']}/undo", {})
    assert undo.status_code == 200 and undo.json["undone"] is True
    assert sorted(e["id"] for e in undo.json["entities"]) == [a.id, b.id]
    assert api.post(f"/api/v1/graph/merges/{done.json['id']}/undo", {}).status_code == 409
    outsider = api_caller(app, team.outsider[0])
    assert outsider.get(f"{url}/duplicates").status_code == 404
    assert outsider.post(f"/api/v1/graph/merges/{done.json['id']}/undo", {}).status_code == 404
