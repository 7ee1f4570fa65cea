"""The custody lifecycle: hand-over accepted or refused by the receiver, check out and
in, seal, release, disposal on a supervisor's authority, legal holds, custody reports."""
from __future__ import annotations

import io
import json

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from taskforce.audit.models import AuditEvent
from taskforce.errors import Conflict, Forbidden, Invalid, NotFound
from taskforce.evidence import ledger, service
from taskforce.evidence.models import CustodyEvent, CustodyTransfer, EvidenceItem
from taskforce.evidence.storage import get_store
from taskforce.extensions import db
from tests.factories_graph import add_person, closed_bolt_uri, ensure_graph_registered, make_team


@pytest.fixture()
def app_environ(app_environ):
    return {**app_environ, "NEO4J_URI": closed_bolt_uri(), "NEO4J_PASSWORD": "unused"}


@pytest.fixture()
def team(app):
    from taskforce import evidence

    ensure_graph_registered(app)
    if "evidence" not in app.blueprints:
        evidence.init_app(app)
    return make_team()


def ingest(actor, case_id, data=b"device bytes", description="Phone extraction"):
    return service.ingest(actor=actor, case_id=case_id, stream=io.BytesIO(data),
                          description=description, filename="x.bin")


def kinds(item_id) -> list[str]:
    return list(db.session.scalars(select(CustodyEvent.kind).where(
        CustodyEvent.item_id == item_id).order_by(CustodyEvent.seq)))


def audits(action: str, outcome: str = "success") -> int:
    return db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == action, AuditEvent.outcome == outcome))


def test_a_hand_over_moves_custody_only_when_the_receiver_accepts(team):
    lead, (inv_user, inv) = team.lead[1], team.investigator
    item = ingest(lead, team.case_id)
    request = service.transfer(actor=lead, item_id=item.id, to_user_id=inv_user.id,
                               place="HQ locker room", reason="Lab examination")
    assert kinds(item.id) == ["COLLECTED", "RECEIVED"]  # nothing moved yet
    with pytest.raises(Conflict):  # one hand-over at a time
        service.transfer(actor=lead, item_id=item.id, to_user_id=team.specialist[0].id,
                         reason="again")
    # only the named receiver sees it and may accept
    assert [t.id for t in service.incoming_transfers(actor=inv)] == [request.id]
    with pytest.raises(NotFound):
        service.accept_transfer(actor=team.specialist[1], transfer_id=request.id)
    event = service.accept_transfer(actor=inv, transfer_id=request.id, note="Received sealed")
    assert event.kind == "TRANSFERRED" and event.username == inv_user.username
    assert event.place == "HQ locker room" and event.reason == "Lab examination"
    details = json.loads(event.details)
    assert details["from_user_id"] == team.lead[0].id and details["to_user_id"] == inv_user.id
    assert db.session.get(EvidenceItem, item.id).custodian_id == inv_user.id
    with pytest.raises(Conflict):
        service.accept_transfer(actor=inv, transfer_id=request.id)

    # a refusal leaves custody where it was and the chain unchanged
    back = service.transfer(actor=inv, item_id=item.id, to_user_id=team.specialist[0].id,
                            reason="For the interview")
    with pytest.raises(Invalid):
        service.refuse_transfer(actor=team.specialist[1], transfer_id=back.id, note="")
    service.refuse_transfer(actor=team.specialist[1], transfer_id=back.id,
                            note="Not my case work")
    assert db.session.get(CustodyTransfer, back.id).status == "refused"
    assert db.session.get(EvidenceItem, item.id).custodian_id == inv_user.id
    assert kinds(item.id) == ["COLLECTED", "RECEIVED", "TRANSFERRED"]
    assert audits("evidence.transfer_refuse") == 1 and audits("evidence.transfer_accept") == 1
    assert service.verify_ledger().ok


def test_check_out_check_in_seal_release_each_leave_an_event(team):
    lead = team.lead[1]
    item = ingest(lead, team.case_id)
    with pytest.raises(Invalid) as bad:
        service.check_out(actor=lead, item_id=item.id, to="", reason="")
    assert {"to", "reason"} <= set(bad.value.fields)
    with pytest.raises(Invalid):
        service.check_out(actor=lead, item_id=item.id, to="Lab", reason="x",
                          expected_return_at="2001-01-01T00:00")
    service.check_out(actor=lead, item_id=item.id, to="State crime lab",
                      reason="Chip-off extraction", place="Evidence room 2",
                      expected_return_at=(service.now().replace(microsecond=0)
                                          .isoformat()))
    assert db.session.get(EvidenceItem, item.id).state == "checked_out"
    with pytest.raises(Conflict):
        service.seal(actor=lead, item_id=item.id, seal_number="S-1")
    with pytest.raises(Conflict):
        service.transfer(actor=lead, item_id=item.id, to_user_id=team.investigator[0].id,
                         reason="x")
    service.check_in(actor=lead, item_id=item.id, place="Evidence room 2", condition="Intact")
    service.seal(actor=lead, item_id=item.id, seal_number="S-000123", place="Evidence room 2")
    # another team member neither holds it nor manages the case
    with pytest.raises(Forbidden):
        service.check_out(actor=team.investigator[1], item_id=item.id, to="Lab", reason="x")
    with pytest.raises(Forbidden):
        service.release(actor=team.investigator[1], item_id=item.id, released_to="Owner",
                        reason="x")
    service.release(actor=lead, item_id=item.id, released_to="Owner, on court order",
                    reason="Order of 3 March")
    assert kinds(item.id) == ["COLLECTED", "RECEIVED", "CHECKED_OUT", "CHECKED_IN", "SEALED",
                              "RELEASED"]
    events = db.session.scalars(select(CustodyEvent).where(CustodyEvent.item_id == item.id)
                                .order_by(CustodyEvent.seq)).all()
    assert json.loads(events[2].details)["to"] == "State crime lab"
    assert json.loads(events[4].details)["seal_number"] == "S-000123"
    assert all(e.user_id == team.lead[0].id for e in events[2:])
    assert service.verify_ledger().ok


def test_disposal_needs_a_supervisor_and_no_legal_hold(team):
    lead, (_sup_user, supervisor) = team.lead[1], team.supervisor
    item = ingest(lead, team.case_id)
    with pytest.raises(Forbidden):  # the lead manages the case but is no supervisor
        service.dispose(actor=lead, item_id=item.id, method="Wiped", reason="Closed")
    with pytest.raises(Forbidden):  # a legal hold is a supervisor's call, not the lead's
        service.set_legal_hold(actor=lead, case_id=team.case_id, reason="x")
    hold = service.set_legal_hold(actor=supervisor, case_id=team.case_id,
                                  reason="Preservation letter from the defence")
    assert get_store().lock_status(item.sha256).legal_hold  # recorded on the local store
    with pytest.raises(Conflict):
        service.set_legal_hold(actor=supervisor, case_id=team.case_id, reason="again")
    later = ingest(lead, team.case_id, b"added under the hold")
    assert get_store().lock_status(later.sha256).legal_hold  # ingest held it at once
    with pytest.raises(Conflict) as held:
        service.dispose(actor=supervisor, item_id=item.id, method="Wiped", reason="Closed")
    assert "legal hold" in held.value.message
    assert audits("evidence.dispose", "denied") == 2
    assert kinds(item.id) == ["COLLECTED", "RECEIVED"]
    service.clear_legal_hold(actor=supervisor, case_id=team.case_id, reason="Trial ended")
    assert not get_store().lock_status(item.sha256).legal_hold
    assert hold.id and audits("evidence.legal_hold_set") == 1
    event = service.dispose(actor=supervisor, item_id=item.id, method="Returned to owner",
                            reason="Case closed, appeal period over")
    assert event.kind == "DISPOSED"
    assert json.loads(event.details)["authorised_by"] == team.supervisor[0].username
    assert db.session.get(EvidenceItem, item.id).state == "disposed"
    assert get_store().exists(item.sha256)  # bytes kept under the store's retention
    with pytest.raises(Conflict):
        service.check_out(actor=lead, item_id=item.id, to="Lab", reason="x")


def test_a_hold_does_not_lift_bytes_another_held_case_shares(team):
    lead, supervisor = team.lead[1], team.supervisor[1]
    from tests.factories_investigations import make_case

    other_case = make_case(lead)
    item = ingest(lead, team.case_id, b"the same bytes")
    ingest(lead, other_case, b"the same bytes")
    service.set_legal_hold(actor=supervisor, case_id=team.case_id, reason="one")
    service.set_legal_hold(actor=supervisor, case_id=other_case, reason="two")
    service.clear_legal_hold(actor=supervisor, case_id=team.case_id, reason="done")
    assert get_store().lock_status(item.sha256).legal_hold


def test_custody_reports_hold_every_event_both_hashes_and_redact_survivors(team):
    lead, investigator = team.lead[1], team.investigator[1]
    add_person(lead, team.case_id, "Rosalind Featherstone", role="victim")
    item = ingest(investigator, team.case_id, description="Photos sent by Rosalind Featherstone")
    service.seal(actor=investigator, item_id=item.id, seal_number="S-9")
    report = service.item_custody_report(actor=investigator, item_id=item.id)
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(report.data)).pages)
    flat = text.replace("\n", "")
    assert item.sha256 in flat and item.md5 in flat
    for kind in ("COLLECTED", "RECEIVED", "SEALED", "ACCESSED"):
        assert kind in text
    assert "Featherstone" not in text and "Survivor-" in text
    assert kinds(item.id)[-1] == "ACCESSED"
    assert audits("evidence.custody_report") == 1
    # the case lead may see survivors: the name stays
    case_report = service.case_custody_report(actor=lead, case_id=team.case_id)
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(case_report.data)).pages)
    assert "Featherstone" in text
    # an outsider reaches neither
    with pytest.raises(NotFound):
        service.item_custody_report(actor=team.outsider[1], item_id=item.id)
    assert ledger.verify_ledger(db.session).ok


def test_survivor_flag_rules(team):
    investigator, specialist = team.investigator[1], team.specialist[1]
    item = ingest(investigator, team.case_id)
    service.flag_survivor_item(actor=investigator, item_id=item.id, reason="Her face")
    assert db.session.get(EvidenceItem, item.id).withheld_from_packages
    with pytest.raises(Forbidden):  # marking is for the team; unmarking is not
        service.flag_survivor_item(actor=investigator, item_id=item.id, identifies=False)
    with pytest.raises(Forbidden):
        service.release_survivor_item(actor=investigator, item_id=item.id, reason="x")
    service.release_survivor_item(actor=specialist, item_id=item.id, reason="Testifies")
    assert not db.session.get(EvidenceItem, item.id).withheld_from_packages


def test_item_reads_show_a_pseudonym_to_those_who_may_not_see_survivors(team):
    lead, investigator = team.lead[1], team.investigator[1]
    add_person(lead, team.case_id, "Ximena Arbuthnot", role="victim")
    item = ingest(investigator, team.case_id,
                  description="Messages from Ximena Arbuthnot's phone")
    service.transfer(actor=investigator, item_id=item.id, to_user_id=team.specialist[0].id,
                     reason="Interview prep with Arbuthnot")
    request = db.session.scalar(select(CustodyTransfer))
    service.accept_transfer(actor=team.specialist[1], transfer_id=request.id)
    seen = service.get_item(actor=investigator, item_id=item.id)
    assert "Arbuthnot" not in seen.item.description and "Survivor-" in seen.item.description
    assert all("Arbuthnot" not in e.reason for e in seen.events)
    listed = service.list_items(actor=team.partner_investigator[1], case_id=team.case_id)
    assert "Arbuthnot" not in listed[0].description
    # the case lead and the victim specialist on the team see the name
    assert "Arbuthnot" in service.get_item(actor=lead, item_id=item.id).item.description
    assert "Arbuthnot" in service.get_item(actor=team.specialist[1],
                                           item_id=item.id).item.description
    # the stored record is untouched
    db.session.expire_all()
    assert "Arbuthnot" in db.session.get(EvidenceItem, item.id).description
