"""Investigations service: case numbers, status history, need to know, leads, tasks,
notes, timeline, validation and audit, called without HTTP."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from taskforce.audit.models import AuditEvent
from taskforce.errors import Conflict, Forbidden, Invalid, NotFound
from taskforce.extensions import db
from taskforce.investigations import policy, service, timeline
from taskforce.investigations.models import (
    Case,
    CaseMember,
    CaseNumberSequence,
    CaseStatusChange,
    Lead,
    Note,
    PartnerGrant,
    Task,
)
from tests.concurrency import at_once
from tests.factories import make_agency
from tests.factories_investigations import make_case, person


@pytest.fixture()
def lead_agency(app):
    return make_agency(name="Springfield Police Department", ori="IL0160000")


@pytest.fixture()
def other_agency(app):
    return make_agency(name="Shelbyville Sheriff", ori="IL0170000", level="local")


@pytest.fixture()
def lead(lead_agency):
    return person(agency=lead_agency, roles=("investigator",))


@pytest.fixture()
def case_id(lead):
    return make_case(lead[1], title="Operation Lighthouse",
                     offences=("sex_trafficking", "child_sexual_exploitation"))


def at(year, month, day, hour=12, minute=0):
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def events(action: str, **where) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.action == action)
    for key, value in where.items():
        query = query.where(getattr(AuditEvent, key) == value)
    return list(db.session.scalars(query.order_by(AuditEvent.seq)))


# Case numbers ---------------------------------------------------------------------

def test_case_number_is_lead_agency_ori_year_and_sequence(app, lead, monkeypatch):
    monkeypatch.setattr(service, "now", lambda: at(2026, 3, 1))
    first = db.session.get(Case, make_case(lead[1]))
    second = db.session.get(Case, make_case(lead[1]))
    assert first.number == "IL0160000-2026-0001"
    assert second.number == "IL0160000-2026-0002"
    assert (second.year, second.sequence) == (2026, 2)


def test_sequence_is_per_agency_and_restarts_each_year(app, lead, other_agency, monkeypatch):
    _, other = person(agency=other_agency)
    monkeypatch.setattr(service, "now", lambda: at(2025, 12, 31, 23, 59))
    a1 = db.session.get(Case, make_case(lead[1])).number
    a2 = db.session.get(Case, make_case(lead[1])).number
    b1 = db.session.get(Case, make_case(other)).number
    monkeypatch.setattr(service, "now", lambda: at(2026, 1, 1, 0, 1))
    a3 = db.session.get(Case, make_case(lead[1])).number
    b2 = db.session.get(Case, make_case(other)).number
    assert (a1, a2, a3) == ("IL0160000-2025-0001", "IL0160000-2025-0002", "IL0160000-2026-0001")
    assert (b1, b2) == ("IL0170000-2025-0001", "IL0170000-2026-0001")


def test_concurrent_openers_never_share_a_number(app, lead):
    """Eight threads, each its own session and connection, open cases at once."""
    actor = lead[1]
    numbers = at_once(app, lambda _: service.open_case(
        actor=actor, title="Concurrent", offences=["labor_trafficking"]).number, 8)
    year = datetime.now(UTC).year
    assert sorted(numbers) == [f"IL0160000-{year}-{n:04d}" for n in range(1, 9)]
    assert db.session.get(CaseNumberSequence, (lead[0].agency_id, year)).last_value == 8


# Opening a case ---------------------------------------------------------------------

def test_opener_becomes_lead_investigator_and_team_lead(app, lead, case_id):
    user, _ = lead
    case = db.session.get(Case, case_id)
    assert case.agency_id == user.agency_id
    assert case.lead_investigator_id == user.id
    assert [(m.user_id, m.case_role) for m in case.active_members] == [(user.id, "lead")]
    assert case.status == "open"
    assert sorted(case.offences) == ["child_sexual_exploitation", "sex_trafficking"]
    assert [(c.from_status, c.to_status) for c in case.status_changes] == [(None, "open")]


@pytest.mark.parametrize("roles", [("analyst",), ("coordinator",), ("prosecutor",),
                                   ("victim_specialist",), ("admin",)])
def test_only_investigators_and_supervisors_open_cases(app, lead_agency, roles):
    _, actor = person(agency=lead_agency, roles=roles)
    with pytest.raises(Forbidden):
        make_case(actor)
    assert count(Case) == 0


def test_supervisor_may_open_a_case(app, lead_agency):
    _, sup = person(agency=lead_agency, roles=("supervisor",))
    assert db.session.get(Case, make_case(sup)).lead_investigator_id == sup.user_id


def test_bad_input_names_every_field_and_writes_nothing(app, lead):
    with pytest.raises(Invalid) as err:
        service.open_case(actor=lead[1], title="   ", offences=["smuggling"], summary="x")
    assert set(err.value.fields) == {"title", "offences"}
    with pytest.raises(Invalid) as err:
        service.open_case(actor=lead[1], title="t" * 201, offences=[])
    assert set(err.value.fields) == {"title", "offences"}
    db.session.rollback()
    assert count(Case) == count(CaseMember) == count(CaseNumberSequence) == 0
    # nothing was used up: the first real case is still number 1
    assert db.session.get(Case, make_case(lead[1])).sequence == 1


# Status history ------------------------------------------------------------------------

def test_status_changes_are_recorded_with_who_when_from_to_why(app, lead, monkeypatch):
    actor = lead[1]
    monkeypatch.setattr(service, "now", lambda: at(2026, 1, 31))
    case_id = make_case(actor)
    steps = [("active", "Surveillance began"), ("suspended", "Informant unavailable"),
             ("active", "Informant back"), ("referred_for_prosecution", "Package to USAO"),
             ("closed", "Convictions entered"), ("active", "Appeal: new evidence")]
    for n, (status, why) in enumerate(steps, start=1):
        monkeypatch.setattr(service, "now", lambda n=n: at(2026, 2, n))
        service.change_status(actor=actor, case_id=case_id, status=status, reason=why)
    case = db.session.get(Case, case_id)
    history = [(c.from_status, c.to_status, c.reason, c.changed_by_id, c.changed_at.day)
               for c in case.status_changes][1:]
    assert history == [
        ("open", "active", "Surveillance began", actor.user_id, 1),
        ("active", "suspended", "Informant unavailable", actor.user_id, 2),
        ("suspended", "active", "Informant back", actor.user_id, 3),
        ("active", "referred_for_prosecution", "Package to USAO", actor.user_id, 4),
        ("referred_for_prosecution", "closed", "Convictions entered", actor.user_id, 5),
        ("closed", "active", "Appeal: new evidence", actor.user_id, 6),
    ]
    assert case.status == "active" and case.closed_at is None


@pytest.mark.parametrize("start,target", [("open", "open"), ("suspended", "referred_for_prosecution"),
                                          ("closed", "suspended"), ("open", "reopened")])
def test_invalid_status_changes_are_refused(app, lead, case_id, start, target):
    if start != "open":
        service.change_status(actor=lead[1], case_id=case_id, status=start, reason="setup")
    before = count(CaseStatusChange)
    with pytest.raises(Invalid) as err:
        service.change_status(actor=lead[1], case_id=case_id, status=target, reason="why not")
    assert "status" in err.value.fields
    db.session.rollback()
    assert count(CaseStatusChange) == before
    assert db.session.get(Case, case_id).status == start


def test_status_change_needs_a_reason(app, lead, case_id):
    with pytest.raises(Invalid) as err:
        service.change_status(actor=lead[1], case_id=case_id, status="active", reason=" ")
    assert set(err.value.fields) == {"reason"}


def test_only_lead_or_supervisor_changes_status(app, lead, lead_agency, case_id):
    member, member_actor = person(agency=lead_agency)
    service.add_member(actor=lead[1], case_id=case_id, user_id=member.id,
                       case_role="investigator")
    with pytest.raises(Forbidden):
        service.change_status(actor=member_actor, case_id=case_id, status="active", reason="go")
    _, sup = person(agency=lead_agency, roles=("supervisor",))
    service.change_status(actor=sup, case_id=case_id, status="active", reason="approved")
    assert db.session.get(Case, case_id).status == "active"


def _changed_elsewhere(model, row_id, **values):
    """Another request commits a change on its own connection; ours still holds the
    row as it read it (the session's identity map), as a concurrent request would."""
    with db.engine.begin() as conn:
        conn.execute(update(model).where(model.id == row_id).values(**values))


def test_a_status_change_based_on_a_stale_read_is_refused(app, lead, case_id):
    assert db.session.get(Case, case_id).status == "open"  # read, then...
    _changed_elsewhere(Case, case_id, status="suspended")  # ...someone else moves it
    with pytest.raises(Conflict):
        service.change_status(actor=lead[1], case_id=case_id, status="active", reason="go")
    db.session.expire_all()
    case = db.session.get(Case, case_id)
    assert case.status == "suspended"
    assert [c.to_status for c in case.status_changes] == ["open"]  # no history row written


def test_a_task_is_completed_once_even_by_concurrent_requests(app, lead, case_id):
    task = service.add_task(actor=lead[1], case_id=case_id, title="Canvass")
    assert db.session.get(Task, task.id).done_at is None
    _changed_elsewhere(Task, task.id, done_at=at(2026, 1, 1), done_by_id=lead[0].id)
    with pytest.raises(Conflict):
        service.complete_task(actor=lead[1], case_id=case_id, task_id=task.id)


def test_one_active_membership_and_grant_per_case_in_the_schema(app, lead, case_id,
                                                                other_agency):
    user_id = lead[0].id
    db.session.add(CaseMember(case_id=case_id, user_id=user_id, case_role="analyst",
                              added_by_id=user_id))
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()
    for _ in range(2):
        db.session.add(PartnerGrant(case_id=case_id, agency_id=other_agency.id, access="read",
                                    granted_by_id=user_id))
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()
    # revoked rows are history and do not count
    service.grant_partner(actor=lead[1], case_id=case_id, agency_id=other_agency.id,
                          access="read")
    service.grant_partner(actor=lead[1], case_id=case_id, agency_id=other_agency.id,
                          access="contribute")
    assert count(PartnerGrant) == 2


# Need to know --------------------------------------------------------------------------

def _reach(actor, case_id) -> str:
    """What the actor gets: 'none' (404), 'read', 'contribute' (notes) or 'manage'."""
    try:
        service.get_case(actor=actor, case_id=case_id)
    except NotFound:
        visible = [c.id for c in service.list_cases(actor=actor).items]
        assert case_id not in visible, "listed although the case answers 404"
        return "none"
    assert case_id in [c.id for c in service.list_cases(actor=actor).items]
    try:
        service.add_note(actor=actor, case_id=case_id, body="probe")
    except Forbidden:
        return "read"
    try:
        service.change_status(actor=actor, case_id=case_id, status="open", reason="probe")
    except Forbidden:
        return "contribute"
    except Invalid:  # allowed to try; open -> open is just not a transition
        return "manage"
    return "manage"


def test_outsiders_do_not_see_the_case_at_all(app, case_id, lead_agency, other_agency):
    outsiders = [
        person(agency=other_agency, roles=("investigator",))[1],
        person(agency=other_agency, roles=("supervisor",))[1],  # supervisor elsewhere
        person(agency=other_agency, roles=("coordinator",))[1],
        person(agency=lead_agency, roles=("investigator",))[1],  # same agency, not on the team
        person(agency=lead_agency, roles=("analyst", "prosecutor"))[1],
        person(agency=lead_agency, roles=("admin",))[1],  # admins administer, not read
    ]
    for actor in outsiders:
        assert _reach(actor, case_id) == "none", actor.roles


def test_no_case_and_hidden_case_answer_alike(app, case_id, other_agency):
    _, outsider = person(agency=other_agency)
    for cid in (case_id, case_id + 999, "abc", 2**40, -1, True):
        with pytest.raises(NotFound) as err:
            service.get_case(actor=outsider, case_id=cid)
        assert err.value.message == service._DENIED_NOT_FOUND


def test_supervisor_of_the_lead_agency_sees_and_manages(app, case_id, lead_agency):
    _, sup = person(agency=lead_agency, roles=("supervisor",))
    assert _reach(sup, case_id) == "manage"


def test_admin_on_the_team_sees_the_case(app, lead, case_id, other_agency):
    admin, admin_actor = person(agency=other_agency, roles=("admin",))
    assert _reach(admin_actor, case_id) == "none"
    service.add_member(actor=lead[1], case_id=case_id, user_id=admin.id, case_role="analyst")
    assert _reach(admin_actor, case_id) == "contribute"


def test_partner_read_grant_reads_but_cannot_add(app, lead, case_id, other_agency):
    _, partner = person(agency=other_agency)
    service.grant_partner(actor=lead[1], case_id=case_id, agency_id=other_agency.id,
                          access="read")
    assert _reach(partner, case_id) == "read"
    assert count(Note) == 0
    # an admin-only account of the partner agency still sees nothing
    assert _reach(person(agency=other_agency, roles=("admin",))[1], case_id) == "none"


def test_partner_contribute_grant_adds_and_revoking_removes(app, lead, case_id, other_agency):
    _, partner = person(agency=other_agency, roles=("analyst",))
    grant = service.grant_partner(actor=lead[1], case_id=case_id, agency_id=other_agency.id,
                                  access="contribute")
    assert (grant.granted_by_id, grant.access) == (lead[1].user_id, "contribute")
    assert grant.granted_at is not None
    assert _reach(partner, case_id) == "contribute"
    service.revoke_partner(actor=lead[1], case_id=case_id, grant_id=grant.id)
    grant = db.session.get(PartnerGrant, grant.id)
    assert grant.revoked_at is not None and grant.revoked_by_id == lead[1].user_id
    assert _reach(partner, case_id) == "none"


def test_changing_a_grant_keeps_the_history(app, lead, case_id, other_agency):
    first = service.grant_partner(actor=lead[1], case_id=case_id, agency_id=other_agency.id,
                                  access="read").id
    second = service.grant_partner(actor=lead[1], case_id=case_id, agency_id=other_agency.id,
                                   access="contribute").id
    assert db.session.get(PartnerGrant, first).revoked_at is not None
    assert db.session.get(PartnerGrant, second).revoked_at is None
    with pytest.raises(Conflict):
        service.grant_partner(actor=lead[1], case_id=case_id, agency_id=other_agency.id,
                              access="contribute")


def test_ids_out_of_range_are_bad_input_not_errors(app, lead, case_id):
    with pytest.raises(Invalid) as err:
        service.grant_partner(actor=lead[1], case_id=case_id, agency_id=2**40, access="read")
    assert set(err.value.fields) == {"agency_id"}
    with pytest.raises(Invalid) as err:
        service.add_task(actor=lead[1], case_id=case_id, title="t", assignee_id=-5)
    assert set(err.value.fields) == {"assignee_id"}
    with pytest.raises(NotFound):
        service.complete_task(actor=lead[1], case_id=case_id, task_id=2**40)


def test_grant_input_is_checked(app, lead, case_id, lead_agency):
    with pytest.raises(Invalid) as err:
        service.grant_partner(actor=lead[1], case_id=case_id, agency_id=lead_agency.id,
                              access="everything")
    assert set(err.value.fields) == {"agency_id", "access"}
    with pytest.raises(Invalid) as err:
        service.grant_partner(actor=lead[1], case_id=case_id, agency_id=99999, access="read")
    assert set(err.value.fields) == {"agency_id"}


def test_team_members_reach_and_leaving_ends_it(app, lead, case_id, other_agency):
    user, actor = person(agency=other_agency, roles=("prosecutor",))
    member = service.add_member(actor=lead[1], case_id=case_id, user_id=user.id,
                                case_role="prosecutor")
    assert member.added_by_id == lead[1].user_id
    assert _reach(actor, case_id) == "contribute"
    with pytest.raises(Conflict):
        service.add_member(actor=lead[1], case_id=case_id, user_id=user.id, case_role="analyst")
    with pytest.raises(Forbidden):  # a member does not manage the team
        service.add_member(actor=actor, case_id=case_id, username=lead[0].username,
                           case_role="analyst")
    service.remove_member(actor=lead[1], case_id=case_id, member_id=member.id)
    assert _reach(actor, case_id) == "none"
    assert db.session.get(CaseMember, member.id).removed_at is not None


def test_the_lead_cannot_be_removed_but_can_be_changed(app, lead, case_id, lead_agency):
    case = db.session.get(Case, case_id)
    lead_member = case.active_members[0]
    with pytest.raises(Invalid):
        service.remove_member(actor=lead[1], case_id=case_id, member_id=lead_member.id)
    with pytest.raises(Invalid):
        service.add_member(actor=lead[1], case_id=case_id, user_id=lead[0].id, case_role="lead")
    user, actor = person(agency=lead_agency)
    with pytest.raises(Invalid):  # not on the team yet
        service.change_lead(actor=lead[1], case_id=case_id, user_id=user.id)
    service.add_member(actor=lead[1], case_id=case_id, username=user.username,
                       case_role="investigator")
    service.change_lead(actor=lead[1], case_id=case_id, user_id=user.id)
    case = db.session.get(Case, case_id)
    assert case.lead_investigator_id == user.id
    roles = sorted((m.user_id, m.case_role) for m in case.active_members)
    assert roles == sorted([(user.id, "lead"), (lead[0].id, "investigator")])
    assert policy.access(actor, case) == policy.MANAGE
    assert policy.access(lead[1], case) == policy.WRITE


def test_visible_cases_is_the_list_scope(app, lead, lead_agency, other_agency):
    mine = make_case(lead[1])
    _, other_lead = person(agency=other_agency)
    theirs = make_case(other_lead)
    shared = make_case(other_lead)
    service.grant_partner(actor=other_lead, case_id=shared, agency_id=lead_agency.id,
                          access="read")
    query = policy.visible_cases(select(Case.id), lead[1])
    assert set(db.session.scalars(query)) == {mine, shared}
    assert theirs not in set(db.session.scalars(query))
    from taskforce.accounts.permissions import Actor
    assert list(db.session.scalars(policy.visible_cases(select(Case.id), Actor()))) == []


def test_list_filters(app, lead):
    a = make_case(lead[1], title="Harbor massage parlors", offences=["sex_trafficking"])
    b = make_case(lead[1], title="Farm crews", offences=["labor_trafficking", "related_offence"])
    service.change_status(actor=lead[1], case_id=b, status="active", reason="go")
    ids = lambda **kw: [c.id for c in service.list_cases(actor=lead[1], **kw).items]
    assert ids(status="active") == [b]
    assert ids(status="open") == [a]
    assert ids(offence="labor_trafficking") == [b]
    assert ids(offence="child_sexual_exploitation") == []
    assert ids(q="harbor") == [a]
    assert set(ids()) == {a, b}
    with pytest.raises(Invalid) as err:
        service.list_cases(actor=lead[1], status="pending", offence="fraud")
    assert set(err.value.fields) == {"status", "offence"}


def test_closed_case_takes_no_additions(app, lead, case_id):
    service.change_status(actor=lead[1], case_id=case_id, status="closed", reason="done")
    with pytest.raises(Conflict):
        service.add_note(actor=lead[1], case_id=case_id, body="late")
    with pytest.raises(Conflict):
        service.add_lead(actor=lead[1], case_id=case_id, title="late", source="patrol")


# Leads --------------------------------------------------------------------------------

def test_lead_workflow_new_assigned_worked_closed(app, lead, case_id, lead_agency):
    worker, worker_actor = person(agency=lead_agency)
    service.add_member(actor=lead[1], case_id=case_id, user_id=worker.id,
                       case_role="investigator")
    item = service.add_lead(actor=lead[1], case_id=case_id, title="Ad on escort site",
                            source="ncmec_cybertip", source_reference="CT-123456",
                            received_on="2026-01-15")
    assert (item.status, item.received_on) == ("new", date(2026, 1, 15))
    item = service.assign_lead(actor=lead[1], case_id=case_id, lead_id=item.id,
                               assignee_id=worker.id)
    assert (item.status, item.assignee_id) == ("assigned", worker.id)
    item = service.mark_lead_worked(actor=worker_actor, case_id=case_id, lead_id=item.id)
    assert item.status == "worked" and item.worked_at is not None
    item = service.close_lead(actor=worker_actor, case_id=case_id, lead_id=item.id,
                              outcome="substantiated", outcome_notes="Linked to phone")
    assert (item.status, item.outcome, item.closed_by_id) == (
        "closed", "substantiated", worker.id)


@pytest.mark.parametrize("step", ["work_new", "close_new", "close_assigned", "assign_closed",
                                  "work_worked"])
def test_lead_workflow_refuses_skipping_steps(app, lead, case_id, step):
    actor = lead[1]
    item = service.add_lead(actor=actor, case_id=case_id, title="Tip", source="tip_line")
    lid = item.id

    def advance(to):
        if to in ("assigned", "worked", "closed"):
            service.assign_lead(actor=actor, case_id=case_id, lead_id=lid,
                                assignee_id=actor.user_id)
        if to in ("worked", "closed"):
            service.mark_lead_worked(actor=actor, case_id=case_id, lead_id=lid)
        if to == "closed":
            service.close_lead(actor=actor, case_id=case_id, lead_id=lid, outcome="duplicate")

    setup, call = {
        "work_new": ("new", lambda: service.mark_lead_worked(
            actor=actor, case_id=case_id, lead_id=lid)),
        "close_new": ("new", lambda: service.close_lead(
            actor=actor, case_id=case_id, lead_id=lid, outcome="duplicate")),
        "close_assigned": ("assigned", lambda: service.close_lead(
            actor=actor, case_id=case_id, lead_id=lid, outcome="duplicate")),
        "assign_closed": ("closed", lambda: service.assign_lead(
            actor=actor, case_id=case_id, lead_id=lid, assignee_id=actor.user_id)),
        "work_worked": ("worked", lambda: service.mark_lead_worked(
            actor=actor, case_id=case_id, lead_id=lid)),
    }[step]
    advance(setup)
    with pytest.raises(Invalid) as err:
        call()
    assert "status" in err.value.fields
    db.session.rollback()
    assert db.session.get(Lead, lid).status == setup


def test_lead_input_is_checked(app, lead, case_id, other_agency):
    stranger, _ = person(agency=other_agency)
    with pytest.raises(Invalid) as err:
        service.add_lead(actor=lead[1], case_id=case_id, title="", source="rumour",
                         received_on="15/01/2026", assignee_id=stranger.id)
    assert set(err.value.fields) == {"title", "source", "received_on", "assignee_id"}
    item = service.add_lead(actor=lead[1], case_id=case_id, title="Tip", source="patrol")
    service.assign_lead(actor=lead[1], case_id=case_id, lead_id=item.id,
                        assignee_id=lead[0].id)
    service.mark_lead_worked(actor=lead[1], case_id=case_id, lead_id=item.id)
    with pytest.raises(Invalid) as err:
        service.close_lead(actor=lead[1], case_id=case_id, lead_id=item.id, outcome="")
    assert set(err.value.fields) == {"outcome"}
    db.session.rollback()
    assert count(Lead) == 1


def test_a_lead_of_another_case_is_not_found(app, lead, case_id):
    other_case = make_case(lead[1])
    item = service.add_lead(actor=lead[1], case_id=other_case, title="Tip", source="patrol")
    with pytest.raises(NotFound):
        service.assign_lead(actor=lead[1], case_id=case_id, lead_id=item.id,
                            assignee_id=lead[0].id)


# Tasks and notes ------------------------------------------------------------------------

def test_tasks_are_set_and_done_once(app, lead, case_id):
    task = service.add_task(actor=lead[1], case_id=case_id, title="Subpoena phone records",
                            assignee_id=lead[0].id, due_on="2026-04-01")
    assert (task.due_on, task.done) == (date(2026, 4, 1), False)
    task = service.complete_task(actor=lead[1], case_id=case_id, task_id=task.id)
    assert task.done and task.done_by_id == lead[0].id
    with pytest.raises(Conflict):
        service.complete_task(actor=lead[1], case_id=case_id, task_id=task.id)
    with pytest.raises(Invalid) as err:
        service.add_task(actor=lead[1], case_id=case_id, title="", due_on="soon",
                         assignee_id="x")
    assert set(err.value.fields) == {"title", "due_on", "assignee_id"}
    db.session.rollback()
    assert count(Task) == 1


def test_notes_have_author_text_and_optional_event_date(app, lead, case_id):
    note = service.add_note(actor=lead[1], case_id=case_id, body="Met the source.",
                            event_on=date(2026, 1, 2))
    assert (note.author_id, note.body, note.event_on) == (lead[0].id, "Met the source.",
                                                          date(2026, 1, 2))
    plain = service.add_note(actor=lead[1], case_id=case_id, body="Follow-up")
    assert plain.event_on is None
    with pytest.raises(Invalid) as err:
        service.add_note(actor=lead[1], case_id=case_id, body="", event_on="2026-13-01")
    assert set(err.value.fields) == {"body", "event_on"}
    assert [n.id for n in service.list_notes(actor=lead[1], case_id=case_id)] == [note.id,
                                                                                  plain.id]


# Timeline ----------------------------------------------------------------------------------

def test_timeline_orders_every_dated_event(app, lead_agency, monkeypatch):
    clock = {"now": at(2026, 1, 10, 9)}
    monkeypatch.setattr(service, "now", lambda: clock["now"])

    def tick(hours=1):
        clock["now"] += timedelta(hours=hours)

    lead_user, actor = person(agency=lead_agency)
    cid = make_case(actor, title="Timeline")  # 10 Jan 09:00
    tick()
    service.add_note(actor=actor, case_id=cid, body="Tip came in a week ago",
                     event_on=date(2026, 1, 3))  # dated 3 Jan: before the case opened
    tick()
    item = service.add_lead(actor=actor, case_id=cid, title="Hotline call",
                            source="hotline_referral", received_on=date(2026, 1, 5))
    tick()
    service.change_status(actor=actor, case_id=cid, status="active", reason="Go")
    tick()
    task = service.add_task(actor=actor, case_id=cid, title="Canvass")
    tick()
    service.assign_lead(actor=actor, case_id=cid, lead_id=item.id, assignee_id=lead_user.id)
    tick(24)
    service.complete_task(actor=actor, case_id=cid, task_id=task.id)
    tick()
    member, _ = person(agency=lead_agency)
    service.add_member(actor=actor, case_id=cid, user_id=member.id, case_role="analyst")
    tick()
    service.add_note(actor=actor, case_id=cid, body="Analyst joined")

    got = [(e.kind, e.summary) for e in service.timeline(actor=actor, case_id=cid)]
    assert got == [
        ("note", "Tip came in a week ago"),
        ("lead", "Lead received (Hotline referral): Hotline call"),
        ("status", "Case opened as Open"),
        ("team", f"{lead_user.username} joined the team as Lead"),
        ("lead", "Lead recorded: Hotline call"),
        ("status", "Status changed from Open to Active"),
        ("task", "Task set: Canvass"),
        ("lead", f"Lead assigned to {lead_user.username}: Hotline call"),
        ("task", "Task done: Canvass"),
        ("team", f"{member.username} joined the team as Analyst"),
        ("note", "Analyst joined"),
    ]
    ats = [e.at for e in service.timeline(actor=actor, case_id=cid)]
    assert ats == sorted(ats)


def test_other_packages_add_timeline_sources(app, lead, case_id):
    @timeline.timeline_source("test-evidence")
    def _evidence(case, actor):
        yield timeline.TimelineEvent(at=date(2001, 9, 1), kind="evidence",
                                     summary=f"Phone seized for {case.number}")

    try:
        got = service.timeline(actor=lead[1], case_id=case_id)
        assert got[0].kind == "evidence" and got[0].all_day is True
        assert got[0].at == datetime(2001, 9, 1, tzinfo=UTC)
    finally:
        timeline.unregister("test-evidence")
    assert all(e.kind != "evidence" for e in service.timeline(actor=lead[1], case_id=case_id))


def test_timeline_is_need_to_know_too(app, case_id, other_agency):
    with pytest.raises(NotFound):
        service.timeline(actor=person(agency=other_agency)[1], case_id=case_id)


# Audit ---------------------------------------------------------------------------------------

def test_reads_and_changes_are_audited_in_their_transaction(app, lead, case_id):
    actor = lead[1]
    opened = events("case.open", case_id=case_id)
    assert len(opened) == 1 and opened[0].user_id == actor.user_id
    service.get_case(actor=actor, case_id=case_id)
    service.list_cases(actor=actor)
    note = service.add_note(actor=actor, case_id=case_id, body="x")
    service.change_status(actor=actor, case_id=case_id, status="active", reason="go")
    service.timeline(actor=actor, case_id=case_id)
    assert len(events("case.read", case_id=case_id, user_id=actor.user_id)) == 1
    assert len(events("case.list", user_id=actor.user_id)) == 1
    added = events("note.add", case_id=case_id)
    assert len(added) == 1 and added[0].object_id == str(note.id)
    assert len(events("case.status_change", case_id=case_id)) == 1
    assert len(events("case.timeline", case_id=case_id)) == 1


def test_refused_attempts_are_audited_and_invalid_ones_write_nothing(app, lead, case_id,
                                                                    other_agency):
    _, outsider = person(agency=other_agency)
    with pytest.raises(NotFound):
        service.add_note(actor=outsider, case_id=case_id, body="sneaky")
    denied = events("note.add", outcome="denied")
    assert len(denied) == 1 and denied[0].user_id == outsider.user_id
    before = count(AuditEvent)
    with pytest.raises(Invalid):
        service.add_note(actor=lead[1], case_id=case_id, body="")
    db.session.rollback()
    assert count(Note) == 0
    assert count(AuditEvent) == before
