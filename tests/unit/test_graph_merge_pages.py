"""Entity resolution on the case's network page, over HTTP with the real forms (CSRF
included), on SQLite with Neo4j unreachable: possible duplicates listed with why, a
merge made through the form (database and audit), an undo that restores both, the
list of the case's merges, and every refusal shown on the page with its 4xx status:
outsiders 404, a read-only partner 403, a merge reaching into a case you may only
read 403, a stale pair 422, an undo done twice 409. Survivors by pseudonym to
everyone without need to know.
"""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from taskforce.audit.models import AuditEvent
from taskforce.extensions import db
from taskforce.graph import service
from taskforce.graph.models import Entity, EntityMerge
from taskforce.investigations import service as cases
from tests import factories_graph
from tests.factories_graph import add_person, years_ago
from tests.factories_investigations import browser, make_case, person

# shared fixtures (tests/factories_graph.py): Neo4j unreachable, the graph registered, a team
neo4j_down_environ = factories_graph.neo4j_down_environ
graph_registered = factories_graph.graph_registered
team_fixture = factories_graph.team_fixture

PSEUDONYM = re.compile(r"Survivor-[2-9A-HJKMNP-TV-Z]{4,8}")
DOB = "1990-04-12"


def _html(resp) -> str:
    return resp.get_data(as_text=True)


def _page(who, case_id: int):
    return who.get(f"/cases/{case_id}/network?duplicates=1")


def _merge_form(who, case_id: int, keep: int, absorb: int, reason: str = "Same man, "
                "two spellings in two reports", **extra):
    return who.post(f"/cases/{case_id}/network/merges",
                    {"pair": f"{keep},{absorb}", "keep_id": str(keep), "reason": reason,
                     **extra})


def _undo_form(who, case_id: int, merge_id: int):
    return who.post(f"/cases/{case_id}/network/merges/undo", {"merge_id": str(merge_id)})


def _merges() -> list[EntityMerge]:
    db.session.expire_all()
    return list(db.session.scalars(select(EntityMerge).order_by(EntityMerge.id)))


def _audit(action: str, outcome: str = "success") -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == action, AuditEvent.outcome == outcome).order_by(AuditEvent.seq)))


def _member(app, team, roles=("investigator",), case_role="investigator"):
    """A browser signed in as a new member of the team's case."""
    who, user = browser(app, roles, agency=team.lead_agency)
    cases.add_member(actor=team.lead[1], case_id=team.case_id, user_id=user.id,
                     case_role=case_role)
    return who, user


@pytest.fixture()
def twins(team):
    """Dante Reyes entered twice (two spellings, one date of birth), and someone else."""
    lead = team.lead[1]
    a = add_person(lead, team.case_id, "Dante Reyes", role="suspect", dob=DOB)
    b = add_person(lead, team.case_id, "Reyes, Dante", dob=DOB)
    other = add_person(lead, team.case_id, "Kevin Brown", dob=DOB)
    return {"a": a.id, "b": b.id, "other": other.id}


# Suggestions -------------------------------------------------------------------------------

def test_the_page_lists_possible_duplicates_with_why_and_a_merge_form(app, team, twins):
    who, _ = _member(app, team)
    resp = _page(who, team.case_id)
    assert resp.status_code == 200
    html = _html(resp)
    section = html[html.index('id="duplicates"'):html.index('id="merges"')]
    pair = f"{twins['a']},{twins['b']}"
    assert f'data-pair="{pair}"' in section
    assert "Similar name, same date of birth" in section and "score 1.00" in section
    assert "Dante Reyes" in section and "Reyes, Dante" in section
    assert "Kevin Brown" not in section  # same day, another name: not suggested
    assert section.count('data-testid="merge-form"') == 1
    assert 'name="csrf_token"' in section and 'name="reason"' in section
    assert "(this case)" in section
    assert "No merges yet." in html
    # reading the page is audited like every read: the suggestions and the merges
    assert _audit("entity.duplicates")[-1].case_id == team.case_id
    assert _audit("entity.merges")[-1].case_id == team.case_id


def test_a_shared_identifier_is_given_as_the_reason(app, team):
    lead = team.lead[1]
    service.add_entity(actor=lead, case_id=team.case_id, kind="phone",
                       identifiers=[("phone", "(312) 555-0199")])
    service.add_entity(actor=lead, case_id=team.case_id, kind="phone", label="312.555.0199")
    who, _ = _member(app, team)
    html = _html(_page(who, team.case_id))
    assert "Shares the same phone number" in html


# Merge and undo through the forms ------------------------------------------------------------

def test_merge_through_the_form_then_undo_restores_both(app, team, twins):
    who, user = _member(app, team)
    resp = _merge_form(who, team.case_id, twins["a"], twins["b"])
    assert resp.status_code == 302, _html(resp)
    assert resp.headers["Location"].endswith(f"/cases/{team.case_id}/network?duplicates=1#duplicates")
    [merge] = _merges()
    assert (merge.kept_id, merge.absorbed_id, merge.case_id) == (twins["a"], twins["b"],
                                                                 team.case_id)
    assert merge.reason == "Same man, two spellings in two reports"
    assert merge.merged_by_id == user.id and merge.undone_at is None
    assert db.session.get(Entity, twins["b"]).merged_into_id == twins["a"]
    [event] = _audit("entity.merge")
    assert event.user_id == user.id and event.case_id == team.case_id
    assert json.loads(event.details)["merge_id"] == merge.id

    html = _html(_page(who, team.case_id))
    entities = html[html.index('data-testid="entities"'):html.index('id="links"')]
    assert "Dante Reyes" in entities and "Reyes, Dante" not in entities  # one entity now
    merges = html[html.index('id="merges"'):]
    assert f'data-merge-id="{merge.id}"' in merges and "In force" in merges
    assert user.username in merges and "Same man, two spellings" in merges
    assert "Dante Reyes" in merges and "Reyes, Dante" in merges  # kept and absorbed named
    assert 'data-testid="undo-form"' in merges
    assert f'data-pair="{twins["a"]},{twins["b"]}"' not in html  # no longer suggested

    resp = _undo_form(who, team.case_id, merge.id)
    assert resp.status_code == 302, _html(resp)
    assert resp.headers["Location"].endswith("#merges")
    [merge] = _merges()
    assert merge.undone_at is not None and merge.undone_by_id == user.id
    assert db.session.get(Entity, twins["b"]).merged_into_id is None
    assert team.case_id in db.session.get(Entity, twins["b"]).case_ids
    assert len(_audit("entity.unmerge")) == 1
    html = _html(_page(who, team.case_id))
    entities = html[html.index('data-testid="entities"'):html.index('id="links"')]
    assert "Dante Reyes" in entities and "Reyes, Dante" in entities  # two again
    merges = html[html.index('id="merges"'):]
    assert "Undone" in merges and 'data-testid="undo-form"' not in merges

    # the same undo again: the page, with the service's message, and 409
    again = _undo_form(who, team.case_id, merge.id)
    assert again.status_code == 409
    assert "already been undone" in _html(again)
    assert 'id="merges"' in _html(again)  # the page itself, not an error page


def test_keeping_the_other_one_absorbs_the_first(app, team, twins):
    who, _ = _member(app, team)
    resp = who.post(f"/cases/{team.case_id}/network/merges",
                    {"pair": f"{twins['a']},{twins['b']}", "keep_id": str(twins["b"]),
                     "reason": "The second report is the better one"})
    assert resp.status_code == 302
    [merge] = _merges()
    assert (merge.kept_id, merge.absorbed_id) == (twins["b"], twins["a"])


# Refusals on the page, never a 500 -------------------------------------------------------------

def test_bad_and_stale_pairs_show_the_page_again_with_422(app, team, twins):
    who, _ = _member(app, team)
    no_reason = _merge_form(who, team.case_id, twins["a"], twins["b"], reason="")
    assert no_reason.status_code == 422
    html = _html(no_reason)
    assert "Say why these are the same" in html and 'id="duplicates"' in html
    nothing_kept = who.post(f"/cases/{team.case_id}/network/merges",
                            {"pair": f"{twins['a']},{twins['b']}", "reason": "x"})
    assert nothing_kept.status_code == 422 and "keep_id" in _html(nothing_kept)
    junk = who.post(f"/cases/{team.case_id}/network/merges",
                    {"pair": "abc,\x00", "keep_id": "abc", "reason": "x"})
    assert junk.status_code == 422
    itself = who.post(f"/cases/{team.case_id}/network/merges",
                      {"pair": f"{twins['a']}", "keep_id": str(twins["a"]), "reason": "x"})
    assert itself.status_code == 422
    huge = _merge_form(who, team.case_id, twins["a"], 2**40)
    assert huge.status_code == 422
    too_long = _merge_form(who, team.case_id, twins["a"], twins["b"], reason="x" * 501)
    assert too_long.status_code == 422 and "reason" in _html(too_long)
    assert _merges() == []

    assert _merge_form(who, team.case_id, twins["a"], twins["b"]).status_code == 302
    stale = _merge_form(who, team.case_id, twins["a"], twins["b"])  # a second tab, say
    assert stale.status_code == 422
    assert "No such entity" in _html(stale)
    assert len(_merges()) == 1

    for bad in ("", "abc", str(2**40), "999999"):
        resp = _undo_form(who, team.case_id, bad)
        assert resp.status_code == 404, (bad, resp.status_code)
        assert "No such merge" in _html(resp) and 'id="merges"' in _html(resp)


def test_an_outsider_gets_404_everywhere_and_changes_nothing(app, team, twins):
    lead = team.lead[1]
    merge = service.merge_entities(actor=lead, case_id=team.case_id, keep_id=twins["a"],
                                   absorb_id=twins["b"], reason="same")
    outsider, _ = browser(app, ("investigator", "supervisor"), agency=team.other_agency)
    assert _page(outsider, team.case_id).status_code == 404
    resp = _undo_form(outsider, team.case_id, merge.id)
    assert resp.status_code == 404
    assert "Dante" not in _html(resp)
    service.unmerge_entities(actor=lead, merge_id=merge.id)
    resp = _merge_form(outsider, team.case_id, twins["a"], twins["b"])
    assert resp.status_code == 404 and "Dante" not in _html(resp)
    assert [m.undone_at is not None for m in _merges()] == [True]
    assert _audit("entity.merge", "denied") and _audit("entity.unmerge", "denied")


def test_a_read_only_partner_sees_suggestions_but_cannot_merge_or_undo(app, team, twins):
    partner, _ = browser(app, ("investigator",), agency=team.partner_agency)
    html = _html(_page(partner, team.case_id))
    assert f'data-pair="{twins["a"]},{twins["b"]}"' in html
    assert 'data-testid="merge-form"' not in html  # read access: no forms offered
    resp = _merge_form(partner, team.case_id, twins["a"], twins["b"])
    assert resp.status_code == 403
    assert "You may read this case but not add to it." in _html(resp)
    assert 'id="duplicates"' in _html(resp)
    assert _merges() == []

    merge = service.merge_entities(actor=team.lead[1], case_id=team.case_id,
                                   keep_id=twins["a"], absorb_id=twins["b"], reason="same")
    html = _html(_page(partner, team.case_id))
    assert f'data-merge-id="{merge.id}"' in html and 'data-testid="undo-form"' not in html
    resp = _undo_form(partner, team.case_id, merge.id)
    assert resp.status_code == 403
    assert "contribute to" in _html(resp)
    assert _merges()[0].undone_at is None


def test_a_merge_reaching_into_a_case_you_may_only_read_is_refused_with_403(app, team):
    """The investigator contributes to this case; the other record of the same man is in
    a case of another agency that granted theirs read access only."""
    who, _ = _member(app, team)
    mine = add_person(team.lead[1], team.case_id, "Dante Reyes", dob=DOB)
    _, their_lead = person(agency=team.other_agency)
    theirs_case = make_case(their_lead, title="Operation Heron")
    cases.grant_partner(actor=their_lead, case_id=theirs_case, agency_id=team.lead_agency.id,
                        access="read")
    theirs = add_person(their_lead, theirs_case, "Dante Reyes", dob=DOB)
    html = _html(_page(who, team.case_id))
    heron = cases.get_case_or_404(actor=their_lead, case_id=theirs_case).number
    section = html[html.index('id="duplicates"'):html.index('id="merges"')]
    assert heron in section  # the other record is named with its case
    resp = _merge_form(who, team.case_id, mine.id, theirs.id)
    assert resp.status_code == 403
    assert "every case you can contribute to" in _html(resp)
    assert _merges() == []
    assert db.session.get(Entity, theirs.id).merged_into_id is None


def test_merges_made_in_a_case_you_may_not_read_are_not_listed(app, team):
    """Heron's team (who may contribute to this case) merges two records of a phone also
    in this case; this case's team does not learn from the merge list that Heron exists."""
    lead = team.lead[1]
    shared = service.add_entity(actor=lead, case_id=team.case_id, kind="phone",
                                identifiers=[("phone", "(312) 555-0101")])
    cases.grant_partner(actor=lead, case_id=team.case_id, agency_id=team.other_agency.id,
                        access="contribute")
    _, their_lead = person(agency=team.other_agency)
    heron = make_case(their_lead, title="Operation Heron")
    heron_number = cases.get_case_or_404(actor=their_lead, case_id=heron).number
    same = service.add_entity(actor=their_lead, case_id=heron, kind="phone",
                              identifiers=[("phone", "312 555 0101")])
    assert same.id == shared.id
    typed = service.add_entity(actor=their_lead, case_id=heron, kind="phone",
                               label="+1 312-555-0101 (burner)")
    service.merge_entities(actor=their_lead, case_id=heron, keep_id=typed.id,
                           absorb_id=shared.id, reason="Heron: the burner")
    who, _ = _member(app, team)
    html = _html(_page(who, team.case_id))
    assert "No merges yet." in html
    assert "Heron" not in html and heron_number not in html
    assert db.session.get(Entity, shared.id).merged_into_id == typed.id  # it did happen


def test_the_merge_form_needs_its_csrf_token(app, team, twins):
    who, _ = _member(app, team)
    forged = who.client.post(f"/cases/{team.case_id}/network/merges",
                             data={"pair": f"{twins['a']},{twins['b']}",
                                   "keep_id": str(twins["a"]), "reason": "forged"},
                             headers={"Accept": "text/html"})
    assert forged.status_code == 400
    assert _merges() == []
    service.merge_entities(actor=team.lead[1], case_id=team.case_id, keep_id=twins["a"],
                           absorb_id=twins["b"], reason="same")
    forged = who.client.post(f"/cases/{team.case_id}/network/merges/undo",
                             data={"merge_id": str(_merges()[0].id)},
                             headers={"Accept": "text/html"})
    assert forged.status_code == 400
    assert _merges()[0].undone_at is None


# Survivors -----------------------------------------------------------------------------------

@pytest.fixture()
def survivor_twins(team):
    """The same survivor entered twice by the lead (two spellings, one date of birth)."""
    lead = team.lead[1]
    dob = years_ago(24)
    a = add_person(lead, team.case_id, "Maria Lopez", role="victim", dob=dob)
    b = add_person(lead, team.case_id, "María López", role="victim", dob=dob)
    db.session.expire_all()
    return {"a": a.id, "b": b.id, "pa": db.session.get(Entity, a.id).pseudonym,
            "pb": db.session.get(Entity, b.id).pseudonym}


def test_survivors_are_shown_by_pseudonym_to_an_investigator_and_by_name_to_a_specialist(
        app, team, survivor_twins):
    s = survivor_twins
    assert PSEUDONYM.fullmatch(s["pa"]) and PSEUDONYM.fullmatch(s["pb"])
    who, _ = _member(app, team)
    html = _html(_page(who, team.case_id))
    section = html[html.index('id="duplicates"'):html.index('id="merges"')]
    assert s["pa"] in section and s["pb"] in section
    assert "identity withheld" in section
    assert "Maria" not in html and "María" not in html

    assert _merge_form(who, team.case_id, s["a"], s["b"],
                       reason="Same survivor, two interviews").status_code == 302
    html = _html(_page(who, team.case_id))
    merges = html[html.index('id="merges"'):]
    assert s["pa"] in merges and s["pb"] in merges  # kept and absorbed, by pseudonym
    assert "Maria" not in html and "María" not in html

    specialist, _ = _member(app, team, roles=("victim_specialist",),
                            case_role="victim_specialist")
    merges = _html(_page(specialist, team.case_id))
    merges = merges[merges.index('id="merges"'):]
    assert "Maria Lopez" in merges and "María López" in merges  # need to know: names


def test_counts_of_merges_and_duplicates_are_in_the_page_menu(app, team, twins):
    who, _ = _member(app, team)
    html = _html(_page(who, team.case_id))
    assert "Possible duplicates (1)" in html and "Merges (0)" in html
    _merge_form(who, team.case_id, twins["a"], twins["b"])
    html = _html(_page(who, team.case_id))
    assert "Possible duplicates (0)" in html and "Merges (1)" in html
    assert db.session.scalar(select(func.count()).select_from(EntityMerge)) == 1


def test_duplicates_are_looked_for_only_on_request(app, team, twins):
    who, _ = _member(app, team)
    html = _html(who.get(f"/cases/{team.case_id}/network"))
    assert 'data-testid="look-for-duplicates"' in html and 'data-testid="duplicate"' not in html
    assert "Possible duplicates (" not in html  # not counted either: nothing was compared
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "entity.duplicates")) == 0
