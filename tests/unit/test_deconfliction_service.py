"""Target deconfliction through the service, without HTTP: exact, possible and
expired matches, the blind index on the raw tables, the hit workflow and who may
move it, notifications, renewal and purge."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from taskforce.audit.models import AuditEvent
from taskforce.deconfliction import blind, service
from taskforce.deconfliction.models import (
    Hit,
    HitEvent,
    Notification,
    PersonBlock,
    TargetRegistration,
)
from taskforce.errors import Conflict, Forbidden, Invalid, NotFound
from taskforce.extensions import db
from tests.unit.test_deconfliction_world import build_world, ensure_deconfliction, person

PHONE_A = "(312) 555-0199"  # as Springfield enters it
PHONE_B = "312.555.0199"  # as the State Police enter it
PHONE_E164 = "+13125550199"


@pytest.fixture()
def mails(monkeypatch):
    """What reaches the SMTP relay through the mail outbox after the commit, recorded
    at send_mail (patched: no relay in unit tests)."""
    from taskforce.mail import service as mail

    sent: list[tuple[list[str], str, str]] = []
    monkeypatch.setattr(mail, "send_mail", lambda *, to, subject, body: sent.append(
        (list(to), subject, body)))
    return sent


@pytest.fixture()
def world(app):
    ensure_deconfliction(app)
    return build_world()


@pytest.fixture()
def blind_on(app):
    app.config["DECONFLICTION_BLIND_INDEX"] = True
    blind.reset(app)
    yield
    app.config["DECONFLICTION_BLIND_INDEX"] = None
    blind.reset(app)


def reg(world, who: str, case: str, *identifiers, **kw):
    return service.register(actor=world.people[who].actor, case_id=world.cases[case],
                            identifiers=list(identifiers), **kw)


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


# --------------------------------------------------------------------------- matching

def test_exact_hit_across_agencies_whatever_the_phone_format(world, mails):
    first = reg(world, "a", "A", ("phone", PHONE_A))
    assert first.created == 1 and first.hits == []
    second = reg(world, "b", "B", ("phone", PHONE_B))
    assert len(second.hits) == 1
    hit = second.hits[0]
    assert hit.kind == "exact" and hit.score == 1.0 and hit.status == "new"
    assert hit.number.startswith("DC-") and len(hit.number.split("-")[-1]) == 6
    assert {hit.a_case_id, hit.b_case_id} == {world.cases["A"], world.cases["B"]}
    assert hit.a_case_id == world.cases["B"]  # side a: the registration that found it
    assert hit.a_identifier_kind == hit.b_identifier_kind == "phone"
    assert hit.b_poc_name == world.people["a"].user.full_name  # default: the lead investigator
    assert [e.action for e in hit.events] == ["created"]


def test_no_hit_for_a_different_phone_or_within_the_same_case(world):
    reg(world, "a", "A", ("phone", PHONE_A))
    assert reg(world, "b", "B", ("phone", "(312) 555-0142")).hits == []
    again = reg(world, "a", "A", ("phone", PHONE_B))  # the same case entering it again
    assert again.hits == [] and again.created == 0 and again.renewed == 1
    assert count(TargetRegistration) == 2


def test_another_case_of_the_same_agency_is_a_hit(world):
    reg(world, "a", "A", ("email", "John.Smith+ads@GoogleMail.com"))
    hits = reg(world, "a2", "A2", ("email", "johnsmith@gmail.com")).hits
    assert len(hits) == 1 and hits[0].a_agency_id == hits[0].b_agency_id


def test_registration_is_idempotent_and_a_pair_hits_once(world):
    reg(world, "a", "A", ("phone", PHONE_A))
    assert len(reg(world, "b", "B", ("phone", PHONE_B)).hits) == 1
    assert reg(world, "b", "B", ("phone", PHONE_B)).hits == []
    assert reg(world, "a", "A", ("phone", PHONE_A)).hits == []
    assert count(Hit) == 1 and count(TargetRegistration) == 2


def test_possible_person_hit_jon_smith_and_john_smyth(world):
    reg(world, "a", "A", {"kind": "person", "value": "Jon Smith", "dob": "1990-04-12"})
    hits = reg(world, "b", "B", {"kind": "person", "value": "John Smyth",
                                 "dob": "1990-04-12"}).hits
    assert len(hits) == 1
    assert hits[0].kind == "possible" and 0.8 <= hits[0].score < 1.0


def test_no_person_hit_for_an_unrelated_name_or_a_distant_birth_year(world):
    reg(world, "a", "A", {"kind": "person", "value": "Jon Smith", "dob": "1990-04-12"})
    assert reg(world, "b", "B", {"kind": "person", "value": "Maria Garcia",
                                 "dob": "1990-04-12"}).hits == []
    assert reg(world, "c", "C", {"kind": "person", "value": "John Smyth",
                                 "dob": "1975-04-12"}).hits == []


def test_the_same_person_exactly_is_an_exact_hit(world):
    reg(world, "a", "A", ("person", "Smith, John|1990-04-12"))
    hits = reg(world, "b", "B", ("person", "John Smith|04/12/1990")).hits
    assert [(h.kind, h.a_identifier_kind) for h in hits] == [("exact", "person")]


def test_nothing_is_found_across_an_expired_registration(world, monkeypatch):
    start = service.now()
    reg(world, "a", "A", ("phone", PHONE_A),
        {"kind": "person", "value": "Jon Smith", "dob": "1990-04-12"})
    monkeypatch.setattr(service, "now", lambda: start + timedelta(days=731))
    result = reg(world, "b", "B", ("phone", PHONE_B),
                 {"kind": "person", "value": "John Smyth", "dob": "1990-04-12"})
    assert result.hits == []
    checked = service.check_only(actor=world.people["c"].actor,
                                 identifiers=[("phone", PHONE_A)])
    assert [m.other.case_id for m in checked.matches] == [world.cases["B"]]  # not A's


def test_renewed_registration_keeps_hitting_and_purge_removes_expired(world, monkeypatch):
    start = service.now()
    a_reg = reg(world, "a", "A", ("phone", PHONE_A)).registrations[0]
    reg(world, "c", "C", ("phone", "(312) 555-0142"))
    monkeypatch.setattr(service, "now", lambda: start + timedelta(days=700))
    service.renew(actor=world.people["a"].actor, registration_id=a_reg.id)
    monkeypatch.setattr(service, "now", lambda: start + timedelta(days=800))
    assert len(reg(world, "b", "B", ("phone", PHONE_B)).hits) == 1  # renewed: still live
    assert service.purge_expired() == 1  # C's, never renewed
    assert count(TargetRegistration) == 2
    assert count(Hit) == 1  # hits keep their snapshot


def test_renew_needs_write_access_to_the_case(world):
    a_reg = reg(world, "a", "A", ("phone", PHONE_A)).registrations[0]
    with pytest.raises(NotFound):
        service.renew(actor=world.people["b"].actor, registration_id=a_reg.id)


def test_purge_keeps_the_hit_readable(world, monkeypatch):
    start = service.now()
    reg(world, "a", "A", ("phone", PHONE_A))
    hit = reg(world, "b", "B", ("phone", PHONE_B)).hits[0]
    monkeypatch.setattr(service, "now", lambda: start + timedelta(days=731))
    assert service.purge_expired() == 2
    assert count(PersonBlock) == 0 and count(TargetRegistration) == 0
    view = service.get_hit(actor=world.people["a"].actor, hit_id=hit.id)
    assert view.hit.b_poc_name == world.people["a"].user.full_name


def test_bad_identifiers_are_refused_with_nothing_written(world):
    with pytest.raises(Invalid) as err:
        reg(world, "a", "A", ("phone", PHONE_A), ("phone", "not a phone"), ("teleport", "x"))
    assert set(err.value.fields) == {"identifiers.1.value", "identifiers.2.kind"}
    db.session.rollback()
    assert count(TargetRegistration) == 0


def test_registering_needs_write_access_and_an_open_case(world):
    with pytest.raises(NotFound):
        reg(world, "b", "A", ("phone", PHONE_A))
    from taskforce.investigations import service as cases

    cases.change_status(actor=world.people["a"].actor, case_id=world.cases["A"],
                        status="closed", reason="done")
    with pytest.raises(Conflict):
        reg(world, "a", "A", ("phone", PHONE_A))


def test_a_given_point_of_contact_is_what_the_other_side_sees(world):
    reg(world, "a", "A", ("phone", PHONE_A),
        poc={"name": "Sgt. Desk", "phone": "217-555-0100", "email": "desk@spd.example.gov"})
    hit = reg(world, "b", "B", ("phone", PHONE_B)).hits[0]
    assert (hit.b_poc_name, hit.b_poc_phone, hit.b_poc_email) == (
        "Sgt. Desk", "+1 217-555-0100", "desk@spd.example.gov")
    assert hit.b_poc_user_id is None
    with pytest.raises(Invalid):
        reg(world, "a", "A", ("phone", "(312) 555-0142"), poc={"name": "No Way To Reach"})


def test_check_only_reports_without_registering_and_is_audited(world, mails):
    reg(world, "a", "A", ("phone", PHONE_A))
    before_hits = count(Hit)
    result = service.check_only(actor=world.people["c"].actor,
                                identifiers=[("phone", PHONE_B), ("email", "x@example.com")])
    assert [(m.kind, m.other.agency.name) for m in result.matches] == [
        ("exact", "Springfield PD")]
    assert count(TargetRegistration) == 1 and count(Hit) == before_hits
    assert count(Notification) == 0 and mails == []
    event = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "deconfliction.check")).one()
    assert "555" not in (event.details or "") and "example.com" not in (event.details or "")
    with pytest.raises(Forbidden):
        admin = person(world.agencies["spd"], roles=("admin",))
        service.check_only(actor=admin.actor, identifiers=[("phone", PHONE_A)])


# --------------------------------------------------------------------------- blind index

def test_blind_index_raw_tables_hold_no_plaintext_and_matching_still_works(app, world,
                                                                           blind_on):
    reg(world, "a", "A", ("phone", PHONE_A),
        {"kind": "person", "value": "Jon Smith", "dob": "1990-04-12"})
    hits = reg(world, "b", "B", ("phone", PHONE_B),
               {"kind": "person", "value": "John Smyth", "dob": "1990-04-12"}).hits
    assert sorted(h.kind for h in hits) == ["exact", "possible"]
    possible = next(h for h in hits if h.kind == "possible")
    assert possible.score >= 0.8
    with db.engine.connect() as conn:
        dump = "\n".join(
            repr(tuple(row)) for table in ("target_registrations", "person_blocks")
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")))
    assert dump.count("hmac1:") == 4
    # (no bare "1990": four digits turn up in hex tags by chance)
    for secret in ("3125550199", "555-0199", "555.0199", "SMITH", "Smith", "smith", "SMYTH",
                   "Smyth", "JON", "Jon", "JOHN", "1990-04-12", "1990|", "|1990", "J500",
                   "S530", "SM0"):
        assert secret not in dump, f"{secret!r} readable in the blind index"
    rows = db.session.scalars(select(TargetRegistration)).all()
    assert all(r.display_hint is None for r in rows)
    assert all(len(r.value_key) == 64 for r in rows)


def test_blind_and_plain_rows_never_meet(app, world):
    reg(world, "a", "A", ("phone", PHONE_A))  # plain
    app.config["DECONFLICTION_BLIND_INDEX"] = True
    blind.reset(app)
    try:
        assert reg(world, "b", "B", ("phone", PHONE_B)).hits == []
        assert len(reg(world, "c", "C", ("phone", PHONE_A)).hits) == 1  # blind meets blind
    finally:
        app.config["DECONFLICTION_BLIND_INDEX"] = None
        blind.reset(app)


def test_blind_index_key_settings():
    assert blind.blind_enabled({"ENV_NAME": "production"}) is True
    assert blind.blind_enabled({"ENV_NAME": "development"}) is False
    assert blind.blind_enabled({"ENV_NAME": "test", "DECONFLICTION_BLIND_INDEX": "on"}) is True
    assert blind.blind_enabled({"ENV_NAME": "production",
                                "DECONFLICTION_BLIND_INDEX": False}) is False
    with pytest.raises(blind.KeyMissing):
        blind.derive_key({"ENV_NAME": "production", "SECRET_KEY": "s" * 64})
    with pytest.raises(blind.KeyMissing):
        blind.derive_key({"ENV_NAME": "production", "DECONFLICTION_KEY": "short"})
    dev = blind.derive_key({"ENV_NAME": "development", "SECRET_KEY": "s" * 64})
    assert dev != blind.derive_key({"ENV_NAME": "development", "SECRET_KEY": "t" * 64})
    given = blind.derive_key({"ENV_NAME": "production", "DECONFLICTION_KEY": "k" * 40})
    assert len(given) == 32 and given != ("k" * 40).encode()[:32]
    a = blind.Keyring(True, given)
    assert a.value_key("phone", PHONE_E164) == a.value_key("phone", PHONE_E164)
    assert a.value_key("phone", PHONE_E164) != blind.Keyring(True, dev).value_key(
        "phone", PHONE_E164)
    assert a.value_key("phone", "x") != a.value_key("email", "x")


def test_production_refuses_to_start_without_the_key(tmp_path):
    from taskforce import create_app, deconfliction

    try:
        app = create_app(environ={"TASKFORCE_ENV": "production", "SECRET_KEY": "s" * 64,
                                  "TASKFORCE_INSTANCE": str(tmp_path / "i"),
                                  "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"})
    except (blind.KeyMissing, RuntimeError) as exc:  # create_app registers deconfliction
        assert "DECONFLICTION_KEY" in str(exc)
        return
    if "deconfliction" in app.blueprints:
        pytest.fail("production started without DECONFLICTION_KEY")
    with pytest.raises(blind.KeyMissing):
        deconfliction.init_app(app)


# --------------------------------------------------------------------------- workflow

@pytest.fixture()
def hit(world):
    reg(world, "a", "A", ("phone", PHONE_A))
    return reg(world, "b", "B", ("phone", PHONE_B)).hits[0]


def test_workflow_new_acknowledged_coordinating_resolved(world, hit):
    a, b = world.people["a"].actor, world.people["b"].actor
    view = service.acknowledge(actor=b, hit_id=hit.id)
    assert view.hit.status == "acknowledged" and view.hit.a_acknowledged_at is not None
    assert view.hit.b_acknowledged_at is None
    view = service.acknowledge(actor=a, hit_id=hit.id)  # the other side's own acknowledgement
    assert view.hit.status == "acknowledged" and view.hit.b_acknowledged_at is not None
    with pytest.raises(Conflict):
        service.acknowledge(actor=a, hit_id=hit.id)
    assert service.start_coordinating(actor=a, hit_id=hit.id).hit.status == "coordinating"
    view = service.resolve(actor=b, hit_id=hit.id, resolution="joint_investigation",
                           note="Joint op agreed.")
    assert (view.hit.status, view.hit.resolution) == ("resolved", "joint_investigation")
    actions = [e.action for e in db.session.scalars(
        select(HitEvent).where(HitEvent.hit_id == hit.id).order_by(HitEvent.id))]
    assert actions == ["created", "acknowledged", "acknowledged", "coordinating", "resolved"]
    audited = set(db.session.scalars(select(AuditEvent.action).where(
        AuditEvent.action.like("deconfliction.hit.%"))))
    assert {"deconfliction.hit.acknowledged", "deconfliction.hit.coordinating",
            "deconfliction.hit.resolved"} <= audited
    for call in (service.acknowledge, service.start_coordinating):
        with pytest.raises(Conflict):
            call(actor=a, hit_id=hit.id)
    with pytest.raises(Conflict):
        service.resolve(actor=a, hit_id=hit.id, resolution="no_action")


def test_invalid_transitions_and_resolutions(world, hit):
    a = world.people["a"].actor
    with pytest.raises(Conflict):
        service.start_coordinating(actor=a, hit_id=hit.id)  # not acknowledged yet
    with pytest.raises(Conflict):
        service.resolve(actor=a, hit_id=hit.id, resolution="same_target")
    service.acknowledge(actor=a, hit_id=hit.id)
    with pytest.raises(Invalid):
        service.resolve(actor=a, hit_id=hit.id, resolution="made_up")
    with pytest.raises(Invalid):
        service.resolve(actor=a, hit_id=hit.id, resolution="no_action", note="x" * 2001)
    assert service.resolve(actor=a, hit_id=hit.id,
                           resolution="different_target").hit.status == "resolved"


def test_who_may_see_and_move_a_hit(world, hit):
    people = world.people
    # outsiders: another agency's investigator, and a colleague of B on no case
    for who in ("c", "outsider", "a2"):
        with pytest.raises(NotFound):
            service.get_hit(actor=people[who].actor, hit_id=hit.id)
        with pytest.raises(NotFound):
            service.acknowledge(actor=people[who].actor, hit_id=hit.id)
    # a coordinator sees and moves any hit, on neither side
    coord = people["coordinator"].actor
    assert service.get_hit(actor=coord, hit_id=hit.id).own_sides == ()
    assert service.acknowledge(actor=coord, hit_id=hit.id).hit.status == "acknowledged"
    # a read-only partner of case A sees the hit but may not move it
    from taskforce.investigations import service as cases

    cases.grant_partner(actor=people["a"].actor, case_id=world.cases["A"],
                        agency_id=world.agencies["hsi"].id, access="read")
    assert service.get_hit(actor=people["c"].actor, hit_id=hit.id).own_sides == ("b",)
    with pytest.raises(Forbidden):
        service.start_coordinating(actor=people["c"].actor, hit_id=hit.id)
    assert service.start_coordinating(actor=coord, hit_id=hit.id).hit.status == "coordinating"
    denied = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "deconfliction.hit.read", AuditEvent.outcome == "denied")).all()
    assert len(denied) == 3


def test_a_point_of_contact_who_is_not_on_the_case_may_act(world):
    poc = world.people["outsider"]  # in B's agency, but not on case B
    reg(world, "b", "B", ("phone", PHONE_B), poc={"user_id": poc.user.id})
    hit = reg(world, "a", "A", ("phone", PHONE_A)).hits[0]
    assert service.acknowledge(actor=poc.actor, hit_id=hit.id).own_sides == ("b",)


def test_lists_show_each_actor_their_hits_and_coordinators_all(world, hit):
    reg(world, "c", "C", ("email", "boss@example.com"))
    other = reg(world, "a2", "A2", ("email", "boss@example.com")).hits[0]
    ids = lambda who: [v.hit.id for v in service.list_hits(
        actor=world.people[who].actor).items]
    assert ids("a") == [hit.id]
    assert ids("b") == [hit.id]
    assert ids("c") == [other.id]
    assert ids("outsider") == []
    assert sorted(ids("coordinator")) == sorted([hit.id, other.id])
    service.acknowledge(actor=world.people["a"].actor, hit_id=hit.id)
    assert [v.hit.id for v in service.list_hits(actor=world.people["a"].actor,
                                                status="new").items] == []


# --------------------------------------------------------------------------- notifications

def test_new_hit_notifies_both_points_of_contact_and_every_coordinator(world, mails):
    second = person(world.agencies["spd"], roles=("coordinator", "investigator"))
    reg(world, "a", "A", ("phone", PHONE_A))
    assert mails == [] and count(Notification) == 0
    hit = reg(world, "b", "B", ("phone", PHONE_B)).hits[0]
    expected = {world.people["a"].user.id, world.people["b"].user.id,
                world.people["coordinator"].user.id, second.user.id}
    rows = db.session.scalars(select(Notification)).all()
    assert {n.user_id for n in rows} == expected and len(rows) == 4
    assert all(n.hit_id == hit.id and n.kind == "hit.new" and n.read_at is None for n in rows)
    assert sorted(to[0] for to, _, _ in mails) == sorted(
        db.session.get(type(world.people["a"].user), uid).email for uid in expected)
    for to, subject, body in mails:
        assert len(to) == 1
        assert hit.number in subject and hit.number in body
        assert f"/deconfliction/hits/{hit.id}" in body
        for leak in ("555", "0199", "Nightjar", "Kestrel", world.case("A").number,
                     world.case("B").number, "Springfield", "State Police", "phone"):
            assert leak not in body and leak not in subject


def test_mail_leaves_only_after_the_commit_and_not_on_rollback(world, mails):
    reg(world, "a", "A", ("phone", PHONE_A))
    service.register(actor=world.people["b"].actor, case_id=world.cases["B"],
                     identifiers=[("phone", PHONE_B)], commit=False)
    assert mails == []  # flushed, not committed: nothing sent yet
    db.session.rollback()
    assert mails == [] and count(Hit) == 0
    db.session.commit()  # a later commit must not send the rolled-back hit's mail
    assert mails == []
    service.register(actor=world.people["b"].actor, case_id=world.cases["B"],
                     identifiers=[("phone", PHONE_B)], commit=False)
    assert mails == []
    db.session.commit()
    assert len(mails) == 3  # A's and B's leads, the coordinator


def test_opening_a_hit_marks_its_notifications_read(world, hit):
    a = world.people["a"].actor
    assert service.list_notifications(actor=a).unread == 1
    service.get_hit(actor=a, hit_id=hit.id)
    assert service.list_notifications(actor=a).unread == 0
    b = world.people["b"].actor
    assert service.mark_notifications_read(actor=b, all=True) == 1
    assert service.list_notifications(actor=b).unread == 0
    coord = world.people["coordinator"].actor
    mine = service.list_notifications(actor=coord).items
    assert service.mark_notifications_read(actor=b, ids=[n.id for n in mine]) == 0  # not his
    assert service.mark_notifications_read(actor=coord, ids=[n.id for n in mine]) == 1


def test_registering_nothing_is_a_no_op(world, mails):
    result = reg(world, "a", "A")
    assert (result.registrations, result.hits, result.created) == ([], [], 0)


def test_flask_deconfliction_commands(app, world, monkeypatch):
    start = service.now()
    reg(world, "a", "A", ("phone", PHONE_A))
    runner = app.test_cli_runner()
    out = runner.invoke(args=["deconfliction", "status"])
    assert out.exit_code == 0, out.output
    assert "blind index: off" in out.output and "plain live: 1" in out.output
    monkeypatch.setattr(service, "now", lambda: start + timedelta(days=800))
    out = runner.invoke(args=["deconfliction", "purge-expired"])
    assert out.exit_code == 0 and "purged 1 expired registration" in out.output


def test_the_graph_services_identifiers_are_taken_as_normalized(world):
    """The graph passes Identifier objects; a phone an import accepted as merely
    possible (strict=False) must register, not fail the graph's transaction."""
    from taskforce.graph.identifiers import Identifier, normalize

    loose = normalize("phone", "+1 999 555 0199", strict=False)
    person_id = normalize("person", "Jon Smith", dob="1990-04-12")
    result = reg(world, "a", "A", loose, person_id)
    assert result.created == 2
    assert {r.display_hint for r in result.registrations} == {loose.display, person_id.display}
    with pytest.raises(Invalid):
        reg(world, "a", "A", Identifier("person", "JON|not-a-date"))
