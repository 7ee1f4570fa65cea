"""JSON API for cases: /api/v1/cases... Thin: parse, call the service, serialise.

Every route is `signed_in` (or role-restricted for opening a case); which case
the caller may reach is decided by the service's one access check.
"""
from __future__ import annotations

from apiflask import APIBlueprint

from taskforce.accounts.permissions import current_actor, requires, signed_in
from taskforce.investigations import policy, service
from taskforce.investigations.policy import OPENER_ROLES
from taskforce.investigations.schemas import (
    CaseIn,
    CaseListOut,
    CaseOut,
    CaseQuery,
    GrantOut,
    LeadAssignIn,
    LeadChangeIn,
    LeadCloseIn,
    LeadIn,
    LeadOut,
    LeadQuery,
    MemberIn,
    MemberOut,
    NoteIn,
    NoteOut,
    PartnerIn,
    StatusChangeOut,
    StatusIn,
    TaskIn,
    TaskOut,
    TimelineOut,
)

bp = APIBlueprint("investigations_api", __name__, url_prefix="/api/v1", tag="Cases")

NOT_FOUND = "No such case, or it is not shared with you"


def _view(case_id: int) -> service.CaseView:
    """The case as the caller now sees it (after a change), without a second read audit."""
    actor = current_actor()
    case = service.get_case_or_404(actor=actor, case_id=case_id)
    return service.CaseView(case=case, access=policy.access(actor, case))


@bp.get("/cases")
@signed_in
@bp.input(CaseQuery, location="query")
@bp.output(CaseListOut)
@bp.doc(summary="List the cases you may see", description="Deny by default: team membership, "
        "a partner agency's grant, or supervising the lead agency.")
def list_cases(query_data):
    return service.list_cases(actor=current_actor(), **query_data)


@bp.post("/cases")
@requires(*OPENER_ROLES)
@bp.input(CaseIn)
@bp.output(CaseOut, status_code=201)
@bp.doc(summary="Open a case", description="Investigators and supervisors. The caller becomes "
        "lead investigator and team lead; the lead agency is the caller's agency.")
def open_case(json_data):
    case = service.open_case(actor=current_actor(), **json_data)
    return _view(case.id), 201


@bp.get("/cases/<int:case_id>")
@signed_in
@bp.output(CaseOut)
@bp.doc(summary="A case with its team, partners and status history", responses={404: NOT_FOUND})
def get_case(case_id: int):
    return service.get_case(actor=current_actor(), case_id=case_id)


@bp.post("/cases/<int:case_id>/status")
@signed_in
@bp.input(StatusIn)
@bp.output(StatusChangeOut, status_code=201)
@bp.doc(summary="Change a case's status (lead or supervisor)", responses={404: NOT_FOUND})
def change_status(case_id: int, json_data):
    return service.change_status(actor=current_actor(), case_id=case_id, **json_data), 201


@bp.post("/cases/<int:case_id>/members")
@signed_in
@bp.input(MemberIn)
@bp.output(MemberOut, status_code=201)
@bp.doc(summary="Add a user to the team (lead or supervisor)", responses={404: NOT_FOUND})
def add_member(case_id: int, json_data):
    return service.add_member(actor=current_actor(), case_id=case_id, **json_data), 201


@bp.delete("/cases/<int:case_id>/members/<int:member_id>")
@signed_in
@bp.output(MemberOut)
@bp.doc(summary="Take a member off the team (kept in history)", responses={404: NOT_FOUND})
def remove_member(case_id: int, member_id: int):
    return service.remove_member(actor=current_actor(), case_id=case_id, member_id=member_id)


@bp.post("/cases/<int:case_id>/lead")
@signed_in
@bp.input(LeadChangeIn)
@bp.output(CaseOut)
@bp.doc(summary="Make another team member the lead investigator", responses={404: NOT_FOUND})
def change_lead(case_id: int, json_data):
    service.change_lead(actor=current_actor(), case_id=case_id, **json_data)
    return _view(case_id)


@bp.post("/cases/<int:case_id>/partners")
@signed_in
@bp.input(PartnerIn)
@bp.output(GrantOut, status_code=201)
@bp.doc(summary="Grant a partner agency read or contribute access", responses={404: NOT_FOUND})
def grant_partner(case_id: int, json_data):
    return service.grant_partner(actor=current_actor(), case_id=case_id, **json_data), 201


@bp.delete("/cases/<int:case_id>/partners/<int:grant_id>")
@signed_in
@bp.output(GrantOut)
@bp.doc(summary="Revoke a partner agency's access", responses={404: NOT_FOUND})
def revoke_partner(case_id: int, grant_id: int):
    return service.revoke_partner(actor=current_actor(), case_id=case_id, grant_id=grant_id)


@bp.get("/cases/<int:case_id>/leads")
@signed_in
@bp.input(LeadQuery, location="query")
@bp.output(LeadOut(many=True))
@bp.doc(summary="A case's leads", responses={404: NOT_FOUND})
def list_leads(case_id: int, query_data):
    return service.list_leads(actor=current_actor(), case_id=case_id, **query_data)


@bp.post("/cases/<int:case_id>/leads")
@signed_in
@bp.input(LeadIn)
@bp.output(LeadOut, status_code=201)
@bp.doc(summary="Record a lead", responses={404: NOT_FOUND})
def add_lead(case_id: int, json_data):
    return service.add_lead(actor=current_actor(), case_id=case_id, **json_data), 201


@bp.post("/cases/<int:case_id>/leads/<int:lead_id>/assign")
@signed_in
@bp.input(LeadAssignIn)
@bp.output(LeadOut)
@bp.doc(summary="Assign (or reassign) a lead to a team member", responses={404: NOT_FOUND})
def assign_lead(case_id: int, lead_id: int, json_data):
    return service.assign_lead(actor=current_actor(), case_id=case_id, lead_id=lead_id,
                               **json_data)


@bp.post("/cases/<int:case_id>/leads/<int:lead_id>/worked")
@signed_in
@bp.output(LeadOut)
@bp.doc(summary="Mark an assigned lead worked", responses={404: NOT_FOUND})
def mark_lead_worked(case_id: int, lead_id: int):
    return service.mark_lead_worked(actor=current_actor(), case_id=case_id, lead_id=lead_id)


@bp.post("/cases/<int:case_id>/leads/<int:lead_id>/close")
@signed_in
@bp.input(LeadCloseIn)
@bp.output(LeadOut)
@bp.doc(summary="Close a worked lead with its outcome", responses={404: NOT_FOUND})
def close_lead(case_id: int, lead_id: int, json_data):
    return service.close_lead(actor=current_actor(), case_id=case_id, lead_id=lead_id,
                              **json_data)


@bp.get("/cases/<int:case_id>/tasks")
@signed_in
@bp.output(TaskOut(many=True))
@bp.doc(summary="A case's tasks", responses={404: NOT_FOUND})
def list_tasks(case_id: int):
    return service.list_tasks(actor=current_actor(), case_id=case_id)


@bp.post("/cases/<int:case_id>/tasks")
@signed_in
@bp.input(TaskIn)
@bp.output(TaskOut, status_code=201)
@bp.doc(summary="Set a task", responses={404: NOT_FOUND})
def add_task(case_id: int, json_data):
    return service.add_task(actor=current_actor(), case_id=case_id, **json_data), 201


@bp.post("/cases/<int:case_id>/tasks/<int:task_id>/done")
@signed_in
@bp.output(TaskOut)
@bp.doc(summary="Mark a task done", responses={404: NOT_FOUND})
def complete_task(case_id: int, task_id: int):
    return service.complete_task(actor=current_actor(), case_id=case_id, task_id=task_id)


@bp.get("/cases/<int:case_id>/notes")
@signed_in
@bp.output(NoteOut(many=True))
@bp.doc(summary="A case's notes", responses={404: NOT_FOUND})
def list_notes(case_id: int):
    return service.list_notes(actor=current_actor(), case_id=case_id)


@bp.post("/cases/<int:case_id>/notes")
@signed_in
@bp.input(NoteIn)
@bp.output(NoteOut, status_code=201)
@bp.doc(summary="Add a note", responses={404: NOT_FOUND})
def add_note(case_id: int, json_data):
    return service.add_note(actor=current_actor(), case_id=case_id, **json_data), 201


@bp.get("/cases/<int:case_id>/timeline")
@signed_in
@bp.output(TimelineOut)
@bp.doc(summary="Every dated event of the case, oldest first", responses={404: NOT_FOUND})
def timeline(case_id: int):
    return {"events": service.timeline(actor=current_actor(), case_id=case_id)}
