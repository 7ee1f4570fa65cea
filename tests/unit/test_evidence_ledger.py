"""The custody ledger: append-only in the database, and every edit or deletion found."""
from __future__ import annotations

import io
import itertools

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from taskforce.evidence import ledger, service
from taskforce.evidence.models import install_custody_append_only, remove_custody_append_only
from taskforce.extensions import db
from tests.factories_investigations import make_case, person


@pytest.fixture()
def ev_app(app):
    from taskforce import evidence

    if "evidence" not in app.blueprints:
        evidence.init_app(app)
    return app


@pytest.fixture()
def items(ev_app):
    """Two items with a few events each: (first, second)."""
    _, actor = person()
    case_id = make_case(actor)
    first = service.ingest(actor=actor, case_id=case_id, stream=io.BytesIO(b"one"),
                           description="first")
    second = service.ingest(actor=actor, case_id=case_id, stream=io.BytesIO(b"two"),
                            description="second")
    for _ in range(2):
        service.download(actor=actor, item_id=second.id)
    service.verify(actor=actor, item_id=second.id)
    return first, second  # second: COLLECTED RECEIVED ACCESSED ACCESSED VERIFIED


def _behind_the_apps_back(*statements: str) -> None:
    """What someone with database access could do: drop the guard, change, put it back."""
    with db.engine.begin() as conn:
        remove_custody_append_only(conn)
        for statement in statements:
            conn.exec_driver_sql(statement)
        install_custody_append_only(conn)


def _verify() -> ledger.LedgerResult:
    db.session.rollback()
    return service.verify_ledger()


def test_intact_ledger_verifies(items):
    result = _verify()
    assert result.ok, result.message
    assert result.items == 2 and result.events == 2 + 5


def test_update_and_delete_are_refused_by_the_database(items):
    first, _ = items
    with pytest.raises(IntegrityError, match="append-only"), db.engine.begin() as conn:
        conn.execute(text("UPDATE custody_events SET reason = 'x' WHERE item_id = :i"),
                     {"i": first.id})
    with pytest.raises(IntegrityError, match="append-only"), db.engine.begin() as conn:
        conn.execute(text("DELETE FROM custody_events WHERE item_id = :i"), {"i": first.id})
    assert _verify().ok


def test_edited_event_is_named(items):
    _, second = items
    _behind_the_apps_back(
        f"UPDATE custody_events SET username = 'someone_else' "
        f"WHERE item_id = {second.id} AND seq = 3")
    result = _verify()
    assert not result.ok
    assert (result.item_id, result.item_number, result.seq) == (second.id, second.number, 3)
    assert "edited" in result.problem
    assert second.number in result.message and "seq 3" in result.message


def test_deleted_event_in_the_middle_is_named(items):
    _, second = items
    _behind_the_apps_back(f"DELETE FROM custody_events WHERE item_id = {second.id} AND seq = 2")
    result = _verify()
    assert not result.ok and result.item_id == second.id
    assert result.seq == 3 and "seq 2 missing" in result.problem


def test_last_event_deleted_is_found(items):
    _, second = items
    _behind_the_apps_back(f"DELETE FROM custody_events WHERE item_id = {second.id} AND seq = 5")
    result = _verify()
    assert not result.ok and result.item_id == second.id
    assert "cut off the end" in result.problem


def test_whole_chain_deleted_is_found(items):
    first, _ = items
    _behind_the_apps_back(f"DELETE FROM custody_events WHERE item_id = {first.id}")
    result = _verify()
    assert not result.ok and result.item_id == first.id
    assert "no custody events" in result.problem


def test_changed_recorded_hash_breaks_the_first_event(items):
    first, _ = items
    with db.engine.begin() as conn:  # the item row is not append-only; the chain binds it
        conn.execute(text("UPDATE evidence_items SET sha256 = :h WHERE id = :i"),
                     {"h": "f" * 64, "i": first.id})
    result = _verify()
    assert not result.ok and result.item_id == first.id and result.seq == 1
    assert "genesis" in result.problem


def test_cli_verify_ledger(ev_app, items):
    _, second = items
    runner = ev_app.test_cli_runner()
    ok = runner.invoke(args=["evidence", "verify-ledger"])
    assert ok.exit_code == 0, ok.output
    assert "custody ledger intact: 7 events on 2 items" in ok.output
    db.session.rollback()
    _behind_the_apps_back(
        f"UPDATE custody_events SET place = 'nowhere' WHERE item_id = {second.id} AND seq = 4")
    broken = runner.invoke(args=["evidence", "verify-ledger"])
    assert broken.exit_code == 1
    assert f"BROKEN at item {second.number}" in broken.output and "seq 4" in broken.output


def test_cli_sweep_rehashes_everything_and_fails_on_a_flipped_byte(ev_app, items):
    from taskforce.evidence.storage import get_store

    first, _ = items
    runner = ev_app.test_cli_runner()
    ok = runner.invoke(args=["evidence", "sweep"])
    assert ok.exit_code == 0, ok.output
    assert "checked 2, intact 2, failed 0" in ok.output
    path = get_store().root / first.storage_key
    path.chmod(0o644)
    path.write_bytes(b"ONE")
    bad = runner.invoke(args=["evidence", "sweep"])
    assert bad.exit_code == 1
    assert f"INTEGRITY FAILURE {first.number}" in bad.output
    assert _verify().ok  # the failures were appended to the chains, which stay sound
    assert ev_app.extensions["celery"].conf.beat_schedule["evidence-integrity-sweep"]


# --- the custody history that is not a change of hands ----------------------------------

NEW_KINDS = ("MOVED", "TRANSFER_REFUSED", "TRANSFER_WITHDRAWN", "LEGAL_HOLD_SET",
             "LEGAL_HOLD_CLEARED")


@pytest.fixture()
def storied(ev_app):
    """A physical item moved, offered and refused, offered and withdrawn, held and
    released from the hold: COLLECTED RECEIVED MOVED TRANSFER_REFUSED TRANSFER_WITHDRAWN
    LEGAL_HOLD_SET LEGAL_HOLD_CLEARED."""
    from taskforce.investigations import service as cases

    lead_user, lead = person()
    case_id = make_case(lead)
    receiver_user, receiver = person(agency=lead_user.agency)
    cases.add_member(actor=lead, case_id=case_id, user_id=receiver_user.id,
                     case_role="investigator")
    _, supervisor = person(agency=lead_user.agency, roles=("supervisor",))
    item = service.add_physical_item(actor=lead, case_id=case_id, description="Phone, bagged",
                                     storage_location="Locker 1")
    service.move_item(actor=lead, item_id=item.id, storage_location="Locker 2",
                      reason="Locker 1 broken")
    offer = service.transfer(actor=lead, item_id=item.id, to_user_id=receiver_user.id,
                             reason="Lab run")
    service.refuse_transfer(actor=receiver, transfer_id=offer.id, note="Not my case work")
    service.transfer(actor=lead, item_id=item.id, to_user_id=receiver_user.id, reason="Again")
    service.cancel_transfer(actor=lead, item_id=item.id, reason="Sent to the wrong person")
    service.set_legal_hold(actor=supervisor, case_id=case_id, reason="Preservation letter")
    service.clear_legal_hold(actor=supervisor, case_id=case_id, reason="Appeal over")
    return item


def test_new_kinds_are_chained_and_verify(ev_app, storied):
    from sqlalchemy import select

    from taskforce.evidence.models import CustodyEvent

    rows = db.session.scalars(select(CustodyEvent).where(CustodyEvent.item_id == storied.id)
                              .order_by(CustodyEvent.seq)).all()
    assert [r.kind for r in rows] == ["COLLECTED", "RECEIVED", *NEW_KINDS]
    for before, after in itertools.pairwise(rows):
        assert after.prev_hash == before.hash
    assert ledger.compute_hash({c: getattr(rows[-1], c) for c in ledger.HASHED_FIELDS}) == \
        rows[-1].hash
    result = _verify()
    assert result.ok and result.events == 7, result.message
    out = ev_app.test_cli_runner().invoke(args=["evidence", "verify-ledger"])
    assert out.exit_code == 0 and "intact: 7 events on 1 items" in out.output, out.output


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_tampering_a_new_kind_event_is_found(storied, kind):
    # rewriting why the hand-over was refused or withdrawn, the item moved or held
    _behind_the_apps_back(f"UPDATE custody_events SET reason = 'rewritten' "
                          f"WHERE item_id = {storied.id} AND kind = '{kind}'")
    result = _verify()
    assert not result.ok and result.item_id == storied.id
    assert result.seq == 3 + NEW_KINDS.index(kind) and "edited" in result.problem


def test_deleting_a_refusal_from_the_chain_is_found(storied):
    _behind_the_apps_back(f"DELETE FROM custody_events WHERE item_id = {storied.id} "
                          "AND kind = 'TRANSFER_REFUSED'")
    result = _verify()
    assert not result.ok and result.seq == 5 and "seq 4 missing" in result.problem


def test_kind_check_constraint_refuses_an_unknown_kind(storied):
    with pytest.raises(IntegrityError, match="(?i)check"), db.engine.begin() as conn:
        remove_custody_append_only(conn)
        conn.exec_driver_sql(f"UPDATE custody_events SET kind = 'TELEPORTED' "
                             f"WHERE item_id = {storied.id} AND seq = 3")
    with db.engine.begin() as conn:
        install_custody_append_only(conn)
    assert _verify().ok
    with pytest.raises(ValueError, match="custody kind"):
        ledger.append(db.session, storied, kind="TELEPORTED")


def test_details_rewritten_on_a_refusal_are_found(storied):
    # who the item was offered to, quietly changed
    _behind_the_apps_back("UPDATE custody_events SET details = replace(details, "
                          "'\"to_username\":\"', '\"to_username\":\"x') "
                          f"WHERE item_id = {storied.id} AND kind = 'TRANSFER_REFUSED'")
    result = _verify()
    assert not result.ok and result.seq == 4 and "edited" in result.problem
