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

    # a refusal leaves custody where it was; the chain records the refused offer
    back = service.transfer(actor=inv, item_id=item.id, to_user_id=team.specialist[0].id,
                            reason="For the interview")
    with pytest.raises(Invalid):
        service.refuse_transfer(actor=team.specialist[1], transfer_id=back.id, note="")
    service.refuse_transfer(actor=team.specialist[1], transfer_id=back.id,
                            note="Not my case work")
    assert db.session.get(CustodyTransfer, back.id).status == "refused"
    assert db.session.get(EvidenceItem, item.id).custodian_id == inv_user.id
    assert kinds(item.id) == ["COLLECTED", "RECEIVED", "TRANSFERRED", "TRANSFER_REFUSED"]
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
    assert kinds(item.id) == ["COLLECTED", "RECEIVED", "LEGAL_HOLD_SET"]
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


# --- custody history that is not a change of hands: refused and withdrawn hand-overs,
# moves, legal holds (each in the item's chain, and still audited) --------------------------

def events_of(item_id) -> list[CustodyEvent]:
    return list(db.session.scalars(select(CustodyEvent).where(CustodyEvent.item_id == item_id)
                                   .order_by(CustodyEvent.seq)))


def test_a_refused_hand_over_says_who_offered_it_to_whom_when_and_why_not(team):
    (lead_user, lead), (inv_user, inv) = team.lead, team.investigator
    item = ingest(lead, team.case_id)
    offer = service.transfer(actor=lead, item_id=item.id, to_user_id=inv_user.id,
                             place="HQ evidence room", reason="For the phone examination")
    service.refuse_transfer(actor=inv, transfer_id=offer.id, note="I am on leave next week")
    event = events_of(item.id)[-1]
    assert event.kind == "TRANSFER_REFUSED"
    # who: the receiver who refused; when: the decision; where: the offer's; why: the note
    assert (event.user_id, event.username) == (inv_user.id, inv_user.username)
    assert event.user_name == inv_user.full_name
    assert event.at == db.session.get(CustodyTransfer, offer.id).decided_at
    assert event.place == "HQ evidence room" and event.reason == "I am on leave next week"
    details = json.loads(event.details)
    assert details["transfer_id"] == offer.id
    assert (details["from_user_id"], details["from_username"]) == (lead_user.id,
                                                                   lead_user.username)
    assert (details["to_user_id"], details["to_username"]) == (inv_user.id, inv_user.username)
    assert details["requested_by"] == lead_user.username
    assert details["requested_at"] == offer.requested_at.isoformat()
    assert details["offer_reason"] == "For the phone examination"
    assert db.session.get(EvidenceItem, item.id).custodian_id == lead_user.id  # nothing moved
    audit = db.session.scalar(select(AuditEvent).where(
        AuditEvent.action == "evidence.transfer_refuse"))
    assert json.loads(audit.details)["custody_hash"] == event.hash  # audited, tied to it
    assert service.verify_ledger().ok


def test_a_withdrawn_hand_over_is_in_the_chain_with_who_withdrew_it(team):
    (lead_user, lead), (inv_user, inv) = team.lead, team.investigator
    item = ingest(inv, team.case_id)
    service.transfer(actor=inv, item_id=item.id, to_user_id=team.specialist[0].id,
                     reason="Interview prep")
    with pytest.raises(Invalid):
        service.cancel_transfer(actor=inv, item_id=item.id, reason="x" * 5000)
    assert kinds(item.id) == ["COLLECTED", "RECEIVED"]  # a refused withdrawal leaves nothing
    # the case lead (who manages the case) withdraws it, saying why
    service.cancel_transfer(actor=lead, item_id=item.id, reason="Interview moved to May")
    event = events_of(item.id)[-1]
    assert event.kind == "TRANSFER_WITHDRAWN" and event.username == lead_user.username
    assert event.reason == "Interview moved to May"
    details = json.loads(event.details)
    assert details["from_username"] == inv_user.username
    assert details["to_username"] == team.specialist[0].username
    assert details["requested_by"] == inv_user.username
    assert details["offer_reason"] == "Interview prep"
    # without a reason it still says what happened
    service.transfer(actor=inv, item_id=item.id, to_user_id=team.specialist[0].id,
                     reason="Again")
    service.cancel_transfer(actor=inv, item_id=item.id)
    assert events_of(item.id)[-1].reason == "Hand-over withdrawn"
    with pytest.raises(Conflict):  # nothing waiting: nothing written
        service.cancel_transfer(actor=inv, item_id=item.id)
    assert kinds(item.id)[2:] == ["TRANSFER_WITHDRAWN", "TRANSFER_WITHDRAWN"]
    assert audits("evidence.transfer_cancel") == 2
    assert service.verify_ledger().ok


def test_a_legal_hold_is_set_and_cleared_in_every_items_chain(team):
    lead, (sup_user, supervisor) = team.lead[1], team.supervisor
    digital = ingest(lead, team.case_id)
    shelf = service.add_physical_item(actor=lead, case_id=team.case_id,
                                      description="Laptop", storage_location="Locker 3")
    service.set_legal_hold(actor=supervisor, case_id=team.case_id,
                           reason="Preservation letter from the defence")
    for item in (digital, shelf):
        event = events_of(item.id)[-1]
        assert event.kind == "LEGAL_HOLD_SET" and event.username == sup_user.username
        assert event.reason == "Preservation letter from the defence"
        details = json.loads(event.details)
        assert details["case"] == digital.number.rsplit("-E", 1)[0]
        assert details["store_hold"] is item.is_digital
    # added while the case is held: held from its first moment, in its chain too
    later = ingest(lead, team.case_id, b"added under the hold")
    booked = service.add_physical_item(actor=lead, case_id=team.case_id,
                                       description="SIM card", storage_location="Locker 3")
    for item in (later, booked):
        event = events_of(item.id)[-1]
        assert event.kind == "LEGAL_HOLD_SET" and event.username == team.lead[0].username
        assert json.loads(event.details)["added_under_hold"] is True
    assert get_store().lock_status(later.sha256).legal_hold
    service.clear_legal_hold(actor=supervisor, case_id=team.case_id, reason="Appeal over")
    for item in (digital, shelf, later, booked):
        event = events_of(item.id)[-1]
        assert event.kind == "LEGAL_HOLD_CLEARED" and event.reason == "Appeal over"
        details = json.loads(event.details)
        assert details["set_by"] == sup_user.username and details["held_since"]
        assert details["kept_for_other_case"] is False
    assert audits("evidence.legal_hold_set") == 1 and audits("evidence.legal_hold_clear") == 1
    assert service.verify_ledger().ok


def test_clearing_a_hold_says_when_another_held_case_keeps_the_bytes(team):
    lead, supervisor = team.lead[1], team.supervisor[1]
    from tests.factories_investigations import make_case

    other_case = make_case(lead)
    item = ingest(lead, team.case_id, b"shared bytes")
    ingest(lead, other_case, b"shared bytes")
    service.set_legal_hold(actor=supervisor, case_id=other_case, reason="two")
    service.set_legal_hold(actor=supervisor, case_id=team.case_id, reason="one")
    service.clear_legal_hold(actor=supervisor, case_id=team.case_id, reason="done")
    assert json.loads(events_of(item.id)[-1].details)["kept_for_other_case"] is True


def _pdf_text(data: bytes) -> str:
    return " ".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)


def test_report_and_item_page_tell_the_refusals_moves_and_holds(app, team):
    from taskforce.investigations import service as cases
    from tests.factories_investigations import browser

    (lead_user, lead), (inv_user, inv) = team.lead, team.investigator
    item = service.add_physical_item(actor=lead, case_id=team.case_id, description="Phone",
                                     storage_location="Locker 1")
    service.move_item(actor=lead, item_id=item.id, storage_location="Annex B shelf 4",
                      reason="Locker 1 flooded")
    offer = service.transfer(actor=lead, item_id=item.id, to_user_id=inv_user.id,
                             reason="Lab run")
    service.refuse_transfer(actor=inv, transfer_id=offer.id, note="Lab is closed")
    service.transfer(actor=lead, item_id=item.id, to_user_id=inv_user.id, reason="Retry")
    service.cancel_transfer(actor=lead, item_id=item.id, reason="Lab still closed")
    service.set_legal_hold(actor=team.supervisor[1], case_id=team.case_id,
                           reason="Defence preservation request")
    service.clear_legal_hold(actor=team.supervisor[1], case_id=team.case_id,
                             reason="Case closed by court")

    text = " ".join(_pdf_text(service.item_custody_report(actor=lead, item_id=item.id).data)
                    .split())
    for kind in ("MOVED", "TRANSFER_REFUSED", "TRANSFER_WITHDRAWN", "LEGAL_HOLD_SET",
                 "LEGAL_HOLD_CLEARED"):
        assert kind in text
    assert "Moved from Locker 1 to Annex B shelf 4" in text and "Locker 1 flooded" in text
    offered = f"Hand-over from {lead_user.full_name} ({lead_user.username}) to " \
              f"{inv_user.full_name} ({inv_user.username}), asked by {lead_user.username}"
    assert text.count(offered) == 2
    assert "refused by the receiver; the giver kept the item" in text
    assert "Why: Lab is closed" in text
    assert "withdrawn before the receiver accepted" in text and "Lab still closed" in text
    assert "Legal hold set on case" in text and "Defence preservation request" in text
    assert "Legal hold on case" in text and "cleared" in text
    assert "Case closed by court" in text

    # the item page, for a team member, says the same in words
    page, viewer = browser(app)
    cases.add_member(actor=lead, case_id=team.case_id, user_id=viewer.id,
                     case_role="investigator")
    html = page.get(f"/evidence/{item.id}").get_data(as_text=True)
    for label in ("Moved to another storage location", "Hand-over refused",
                  "Hand-over withdrawn", "Legal hold set", "Legal hold cleared"):
        assert label in html
    assert "Moved from Locker 1 to Annex B shelf 4" in html
    assert "refused by the receiver" in html and "Lab is closed" in html


def test_a_package_of_an_item_with_the_new_events_verifies_offline(team, tmp_path, capsys):
    import zipfile

    from taskforce.evidence import packages
    from taskforce.evidence import verify as verifier
    from taskforce.evidence.models import Package

    lead, (inv_user, inv) = team.lead[1], team.investigator
    item = ingest(lead, team.case_id, b"bank records", "Bank subpoena return")
    offer = service.transfer(actor=lead, item_id=item.id, to_user_id=inv_user.id, reason="Lab")
    service.refuse_transfer(actor=inv, transfer_id=offer.id, note="Not mine")
    service.transfer(actor=lead, item_id=item.id, to_user_id=inv_user.id, reason="Lab")
    service.cancel_transfer(actor=lead, item_id=item.id, reason="Lab booked out")
    service.set_legal_hold(actor=team.supervisor[1], case_id=team.case_id, reason="Held")
    package = packages.request_package(actor=lead, case_id=team.case_id, item_ids=[item.id])
    package = db.session.get(Package, package.id, populate_existing=True)
    assert package.status == "ready", package.error
    dl = packages.download_package(actor=lead, package_id=package.id)
    path = tmp_path / dl.filename
    with open(path, "wb") as f:
        f.writelines(dl.chunks)
    assert verifier.main([str(path)]) == 0, capsys.readouterr().out
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        report = _pdf_text(zf.read("custody-report.pdf"))
    entry = manifest["items"][0]
    # COLLECTED RECEIVED TRANSFER_REFUSED TRANSFER_WITHDRAWN LEGAL_HOLD_SET, then EXPORTED
    assert entry["custody_events"] >= 5
    head = db.session.scalars(select(CustodyEvent).where(CustodyEvent.item_id == item.id)
                              .where(CustodyEvent.seq == entry["custody_events"])).one()
    assert entry["custody_head"] == head.hash
    for kind in ("TRANSFER_REFUSED", "TRANSFER_WITHDRAWN", "LEGAL_HOLD_SET"):
        assert kind in report
    assert service.verify_ledger().ok
