"""Survivor and minor alerts, through the real graph service and the session hooks
(Celery eager: the job runs in-process right after the graph's commit).

A small task force: Springfield PD leads case A (with the FBI granted read), the
State Police lead case B, and HSI is uninvolved. Each agency has a victim
specialist; HSI's must never hear of anything here.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest
from sqlalchemy import func, select

from taskforce.accounts.models import Agency, User
from taskforce.accounts.permissions import Actor
from taskforce.audit.models import AuditEvent
from taskforce.errors import Conflict, Forbidden, Invalid, NotFound
from taskforce.extensions import db
from taskforce.graph import service as graph
from taskforce.investigations import service as cases
from taskforce.victims import schemas, service
from taskforce.victims.models import AlertFollowUp, SurvivorAlert
from tests.factories import login, make_agency, make_user
from tests.factories_investigations import make_case


def years_ago(n: int, days: int = 0) -> str:
    today = date.today()
    try:
        born = today.replace(year=today.year - n)
    except ValueError:  # 29 February
        born = today.replace(year=today.year - n, day=28)
    return date.fromordinal(born.toordinal() - days).isoformat()


@dataclass
class Member:
    user: User
    password: str
    secret: str | None

    @property
    def actor(self) -> Actor:
        return Actor.for_user(self.user)

    def client(self, app):
        c = app.test_client()
        login(c, self.user.username, self.password, self.secret)
        return c


@dataclass
class World:
    spd: Agency
    isp: Agency
    fbi: Agency
    hsi: Agency
    people: dict[str, Member]
    case_a: int
    case_b: int

    def __getitem__(self, name: str) -> Member:
        return self.people[name]


def member(agency, *roles: str) -> Member:
    user, password, secret = make_user(agency=agency, roles=list(roles or ("investigator",)))
    return Member(user, password, secret)


def build_world(suffix: str = "") -> World:
    """`suffix` keeps agency names unique in a database shared across tests (the worker's)."""
    spd = make_agency(name="Springfield PD" + suffix)
    isp = make_agency(name="Illinois State Police" + suffix, level="state")
    fbi = make_agency(name="FBI Springfield" + suffix, level="federal")
    hsi = make_agency(name="HSI Chicago" + suffix, level="federal")
    people = {
        "lead_a": member(spd), "lead_b": member(isp),
        "spec_a": member(spd, "victim_specialist"),  # not on the team: of the case's agency
        "spec_a2": member(spd, "victim_specialist"),
        "spec_b": member(isp, "victim_specialist"),
        "spec_fbi": member(fbi, "victim_specialist"),  # partner agency granted case A
        "spec_hsi": member(hsi, "victim_specialist"),  # uninvolved
        "inv_a": member(spd),  # on case A's team, not a specialist
    }
    case_a = make_case(people["lead_a"].actor, title="Operation Nightjar")
    case_b = make_case(people["lead_b"].actor, title="Operation Kestrel")
    cases.add_member(actor=people["lead_a"].actor, case_id=case_a,
                     user_id=people["inv_a"].user.id, case_role="investigator")
    cases.grant_partner(actor=people["lead_a"].actor, case_id=case_a, agency_id=fbi.id,
                        access="read")
    return World(spd, isp, fbi, hsi, people, case_a, case_b)


def add_survivor(world: World, *, case: str = "a", name: str = "Maria Lopez", role="victim",
                 dob: str | None = None, who: str | None = None):
    props = {"dob": dob} if dob else None
    idents = [("person", f"{name}|{dob}")] if dob else []
    return graph.add_entity(actor=world[who or f"lead_{case}"].actor,
                            case_id=world.case_a if case == "a" else world.case_b,
                            kind="person", label=name, props=props, identifiers=idents,
                            case_role=role)


def add_phone(world: World, number: str, *, case: str = "a"):
    return graph.add_entity(actor=world[f"lead_{case}"].actor,
                            case_id=world.case_a if case == "a" else world.case_b,
                            kind="phone", identifiers=[("phone", number)])


def alerts_of(world: World, who: str, **kw) -> list[dict]:
    result = service.list_alerts(actor=world[who].actor, **kw)
    return [schemas.alert_out(v, with_follow_ups=False) for v in result.items]


def all_alerts() -> list[SurvivorAlert]:
    db.session.expire_all()
    return list(db.session.scalars(select(SurvivorAlert).order_by(SurvivorAlert.id)))


@pytest.fixture()
def world(app):
    return build_world()


# --------------------------------------------------------------------------- raising

def test_a_victim_added_to_a_case_alerts_the_agencies_concerned_only(app, world):
    survivor = add_survivor(world)
    alerts = all_alerts()
    assert sorted((a.agency_id, a.reason, a.case_id) for a in alerts) == sorted(
        [(world.spd.id, "in_case", world.case_a), (world.fbi.id, "in_case", world.case_a)])
    assert all(a.entity_id == survivor.id and a.survivor and a.status == "new" for a in alerts)

    (mine,) = alerts_of(world, "spec_a")
    assert mine["why"] == "linked to case as victim"
    assert mine["revealed"] is True and mine["label"] == "Maria Lopez"
    assert mine["pseudonym"] == survivor.pseudonym
    lead = world["lead_a"].user
    assert mine["poc"] == {"name": lead.full_name, "agency": "Springfield PD", "phone": "",
                           "email": lead.email}
    (fbi,) = alerts_of(world, "spec_fbi")  # partner specialist: may see survivors in A
    assert fbi["revealed"] is True
    for outsider in ("spec_hsi", "spec_b", "inv_a", "lead_b"):
        assert alerts_of(world, outsider) == [], outsider
        assert service.open_count(actor=world[outsider].actor) == 0
    assert service.open_count(actor=world["spec_a"].actor) == 1
    assert service.open_count(actor=world["spec_a2"].actor) == 1


def test_the_case_lead_sees_the_name_and_cannot_act(app, world):
    add_survivor(world)
    (seen,) = alerts_of(world, "lead_a")
    assert seen["label"] == "Maria Lopez" and seen["can_act"] is False
    with pytest.raises(Forbidden):
        service.acknowledge(actor=world["lead_a"].actor, alert_id=seen["id"])


def test_no_repeat_for_a_fact_already_alerted(app, world):
    survivor = add_survivor(world, dob=years_ago(30))
    before = [a.id for a in all_alerts()]
    assert len(before) == 2
    # the same person entered again (same identifier): attached, nothing new to tell
    again = add_survivor(world, dob=years_ago(30))
    assert again.id == survivor.id
    # and evaluating the same rows again (a retried job) raises nothing
    from taskforce.graph.models import CaseEntity

    ce_ids = list(db.session.scalars(select(CaseEntity.id)))
    assert service.evaluate(case_entity_ids=ce_ids) == []
    assert [a.id for a in all_alerts()] == before


def test_a_minor_by_date_of_birth_is_alerted_an_adult_witness_is_not(app, world):
    add_survivor(world, name="Ann Adult", role="witness", dob=years_ago(18, days=1))
    assert all_alerts() == []
    minor = add_survivor(world, name="Kim Young", role="witness", dob=years_ago(18, days=-1))
    alerts = all_alerts()
    assert {a.agency_id for a in alerts} == {world.spd.id, world.fbi.id}
    assert all(a.minor and not a.survivor and a.entity_id == minor.id for a in alerts)
    (seen,) = alerts_of(world, "spec_a")
    assert seen["why"] == "linked to case as witness" and seen["minor"] is True
    assert seen["pseudonym"] == f"Minor #{minor.id}"  # no pseudonym: not a victim


def test_a_link_touching_a_survivor_is_alerted_once(app, world):
    survivor = add_survivor(world)
    trafficker = add_survivor(world, name="Vic Tor", role="suspect")
    before = len(all_alerts())
    link = graph.add_link(actor=world["lead_a"].actor, case_id=world.case_a,
                          source_id=trafficker.id, target_id=survivor.id, type="RECRUITED")
    new = all_alerts()[before:]
    assert {(a.reason, a.link_type, a.link_id, a.agency_id) for a in new} == {
        ("link", "RECRUITED", link.id, world.spd.id), ("link", "RECRUITED", link.id, world.fbi.id)}
    # the same statement again merges into the link: no new alert
    graph.add_link(actor=world["lead_a"].actor, case_id=world.case_a,
                   source_id=trafficker.id, target_id=survivor.id, type="RECRUITED", count=3)
    assert len(all_alerts()) == before + 2
    seen = alerts_of(world, "spec_a")
    assert seen[0]["why"] == "linked in the case (RECRUITED)"


def test_one_link_from_another_cases_entity_shows_the_pseudonym_and_the_other_lead(app, world):
    survivor = add_survivor(world)
    phone_a = add_phone(world, "(312) 555-0142")
    graph.add_link(actor=world["lead_a"].actor, case_id=world.case_a, source_id=survivor.id,
                   target_id=phone_a.id, type="USES")
    assert alerts_of(world, "spec_b") == []
    # case B enters the same phone: the survivor is now one link from B's entities
    phone_b = add_phone(world, "312.555.0142", case="b")
    assert phone_b.id == phone_a.id
    (seen,) = alerts_of(world, "spec_b")
    assert seen["why"] == "one link from a case entity (USES)"
    assert seen["revealed"] is False and seen["name"] is None
    assert seen["label"] == survivor.pseudonym
    lead_a = world["lead_a"].user
    assert seen["poc"]["name"] == lead_a.full_name and seen["poc"]["agency"] == "Springfield PD"
    # B's own case is named; nothing of case A is
    a_number = world_case(world.case_a).number
    assert seen["case"]["number"] != a_number
    assert "Maria" not in str(seen) and "Nightjar" not in str(seen) and a_number not in str(seen)
    assert alerts_of(world, "spec_hsi") == []


def test_one_link_found_when_the_link_comes_after_the_shared_entity(app, world):
    phone = add_phone(world, "(312) 555-0177", case="b")
    add_phone(world, "312-555-0177")  # case A has the same phone
    survivor = add_survivor(world)
    graph.add_link(actor=world["lead_a"].actor, case_id=world.case_a, source_id=survivor.id,
                   target_id=phone.id, type="CALLED")
    (seen,) = alerts_of(world, "spec_b")
    assert seen["why"] == "one link from a case entity (CALLED)"
    assert seen["label"] == survivor.pseudonym


def test_the_same_survivor_in_two_agencies_cases_tells_both_sides(app, world):
    dob = years_ago(25)
    survivor = add_survivor(world, dob=dob)
    add_survivor(world, case="b", name="LOPEZ, MARIA", role="witness", dob=dob)
    other = [a for a in all_alerts() if a.reason == "other_agency"]
    assert sorted((a.case_id, a.contact_case_id, a.agency_id) for a in other) == sorted([
        (world.case_b, world.case_a, world.isp.id),
        (world.case_a, world.case_b, world.spd.id),
        (world.case_a, world.case_b, world.fbi.id)])
    b_side = [a for a in alerts_of(world, "spec_b") if a["reason"] == "other_agency"]
    assert len(b_side) == 1 and b_side[0]["why"] == "also in another agency's case"
    assert b_side[0]["poc"]["name"] == world["lead_a"].user.full_name
    a_side = [a for a in alerts_of(world, "spec_a") if a["reason"] == "other_agency"]
    assert a_side[0]["poc"]["name"] == world["lead_b"].user.full_name
    assert a_side[0]["pseudonym"] == survivor.pseudonym
    assert alerts_of(world, "spec_hsi") == []


def world_case(case_id):
    from taskforce.investigations.models import Case

    return db.session.get(Case, case_id)


def test_a_rolled_back_write_alerts_nobody(app, world):
    from taskforce.graph.models import CaseEntity, Entity

    e = Entity(kind="person", pseudonym="Survivor-ZZZZ")
    if hasattr(Entity, "label"):
        e.label = "Nobody"
    db.session.add(e)
    db.session.flush()
    db.session.add(CaseEntity(case_id=world.case_a, entity_id=e.id, role="victim"))
    db.session.flush()
    db.session.rollback()
    add_phone(world, "(312) 555-0100")  # the next commit carries nothing of the rolled-back one
    assert all_alerts() == []


def test_a_direct_orm_write_is_watched_too(app, world):
    """Not only the graph service: any commit that writes a membership (an import, a
    console script) is seen by the hook."""
    from taskforce.graph.models import CaseEntity, Entity

    e = Entity(kind="person", pseudonym="Survivor-QQQQ")
    if hasattr(Entity, "label"):
        e.label = "Imported"
    db.session.add(e)
    db.session.flush()
    db.session.add(CaseEntity(case_id=world.case_b, entity_id=e.id, role="victim"))
    db.session.commit()
    assert [(a.agency_id, a.reason) for a in all_alerts()] == [(world.isp.id, "in_case")]


# --------------------------------------------------------------------------- working

def test_acknowledge_and_follow_up_by_the_agencys_specialist(app, world):
    add_survivor(world)
    (seen,) = alerts_of(world, "spec_a")
    spec = world["spec_a"]
    view = service.acknowledge(actor=spec.actor, alert_id=seen["id"])
    assert view.alert.status == "acknowledged" and view.alert.acknowledged_by_id == spec.user.id
    with pytest.raises(Conflict):
        service.acknowledge(actor=world["spec_a2"].actor, alert_id=seen["id"])
    assert service.open_count(actor=spec.actor) == 0
    view = service.record_follow_up(actor=world["spec_a2"].actor, alert_id=seen["id"],
                                    action="services_offered", note="Shelter bed offered.")
    out = schemas.alert_out(view)
    assert [(f["action"], f["note"], f["by"]) for f in out["follow_ups"]] == [
        ("services_offered", "Shelter bed offered.", world["spec_a2"].user.full_name)]
    assert out["follow_ups"][0]["at"] is not None
    actions = set(db.session.scalars(select(AuditEvent.action)
                                     .where(AuditEvent.object_type == "survivor_alert")))
    assert {"survivor_alert.raise", "survivor_alert.acknowledge", "survivor_alert.follow_up",
            "survivor_alert.list"} <= actions
    # the note's words are not copied into the audit trail
    details = db.session.scalars(select(AuditEvent.details)
                                 .where(AuditEvent.action == "survivor_alert.follow_up")).all()
    assert "Shelter" not in str(details)


def test_a_follow_up_on_a_new_alert_acknowledges_it(app, world):
    add_survivor(world)
    (seen,) = alerts_of(world, "spec_a")
    view = service.record_follow_up(actor=world["spec_a"].actor, alert_id=seen["id"],
                                    action="contacted")
    assert view.alert.status == "acknowledged"


@pytest.mark.parametrize("who,error", [
    ("spec_b", NotFound),  # another agency's specialist: not addressed to them
    ("spec_hsi", NotFound),
    ("inv_a", NotFound),  # on the team, not a specialist
    ("lead_a", Forbidden),  # sees it, does not work it
])
def test_who_may_not_work_an_alert(app, world, who, error):
    add_survivor(world)
    alert_id = alerts_of(world, "spec_a")[0]["id"]
    with pytest.raises(error):
        service.record_follow_up(actor=world[who].actor, alert_id=alert_id, action="contacted")
    with pytest.raises(error):
        service.acknowledge(actor=world[who].actor, alert_id=alert_id)
    assert db.session.scalar(select(func.count(AlertFollowUp.id))) == 0
    denied = db.session.scalars(select(AuditEvent).where(AuditEvent.outcome == "denied",
                                                         AuditEvent.object_type
                                                         == "survivor_alert")).all()
    assert denied


@pytest.mark.parametrize("kwargs,field", [
    ({"action": "hugged"}, "action"),
    ({"action": None}, "action"),
    ({"action": "note", "note": ""}, "note"),
    ({"action": "referred", "note": "x" * 2001}, "note"),
    ({"action": "referred", "note": "a\x00b"}, "note"),
])
def test_bad_follow_up_is_refused_and_writes_nothing(app, world, kwargs, field):
    add_survivor(world)
    alert_id = alerts_of(world, "spec_a")[0]["id"]
    with pytest.raises(Invalid) as err:
        service.record_follow_up(actor=world["spec_a"].actor, alert_id=alert_id, **kwargs)
    assert field in err.value.fields
    db.session.expire_all()
    assert db.session.get(SurvivorAlert, alert_id).status == "new"
    assert db.session.scalar(select(func.count(AlertFollowUp.id))) == 0


def test_a_witness_who_becomes_a_victim_is_alerted_then(app, world):
    dob = years_ago(40)
    witness = add_survivor(world, name="Ann Other", role="witness", dob=dob)
    assert all_alerts() == []  # an adult witness concerns nobody here
    again = add_survivor(world, name="Ann Other", role="victim", dob=dob)
    assert again.id == witness.id
    alerts = all_alerts()
    assert {(a.agency_id, a.reason, a.role) for a in alerts} == {
        (world.spd.id, "in_case", "victim"), (world.fbi.id, "in_case", "victim")}
    assert all(a.survivor for a in alerts)


def test_a_bulk_insert_as_imports_write_is_watched_too(app, world):
    """Imports write links with `session.execute(insert(Link), rows)`: no objects are
    flushed, so the hook reads the insert itself (do_orm_execute)."""
    from sqlalchemy import insert

    from taskforce.graph.models import CaseEntity, Link

    survivor = add_survivor(world)
    phones = [add_phone(world, f"(312) 555-01{n:02d}") for n in range(3)]
    before = len(all_alerts())
    rows = [{"case_id": world.case_a, "source_id": p.id, "target_id": survivor.id,
             "type": "CALLED", "provenance_kind": "import", "provenance_ref": "import-1",
             "count": 1, "confidence": 1.0} for p in phones]
    rows.append({"case_id": world.case_a, "source_id": phones[0].id, "target_id": phones[1].id,
                 "type": "CALLED", "provenance_kind": "import", "provenance_ref": "import-1",
                 "count": 1, "confidence": 1.0})  # phone to phone: nobody to alert
    db.session.execute(insert(Link), rows)
    db.session.commit()
    new = all_alerts()[before:]
    assert sorted((a.reason, a.link_type, a.agency_id) for a in new) == sorted(
        [("link", "CALLED", world.spd.id)] * 3 + [("link", "CALLED", world.fbi.id)] * 3)
    # a bulk membership: case B takes one of those phones, the survivor is one link away
    phone_b = phones[2]
    db.session.execute(insert(CaseEntity), [{"case_id": world.case_b,
                                             "entity_id": phone_b.id, "role": None}])
    db.session.commit()
    (seen,) = alerts_of(world, "spec_b")
    assert seen["why"] == "one link from a case entity (CALLED)"
    assert seen["label"] == survivor.pseudonym
