"""Case pages. Thin: parse the form, call the service, render or redirect.

A form on the case page that the service refuses as bad input (Invalid) or as
conflicting with the case's state (Conflict) shows the case page again with
the message beside that form and the 422/409 status; access refusals go to the
one error handler (404 for a case the user may not see, 403 for one they may
only read).
"""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from taskforce.accounts.permissions import current_actor, requires, signed_in
from taskforce.errors import Conflict, Invalid
from taskforce.investigations import service
from taskforce.investigations.models import (
    CASE_ROLES,
    CASE_STATUSES,
    LEAD_OUTCOMES,
    LEAD_SOURCES,
    LEAD_STATUSES,
    OFFENCES,
    PARTNER_ACCESS,
)
from taskforce.investigations.policy import OPENER_ROLES

bp = Blueprint("investigations", __name__, url_prefix="/cases")

LABELS = {
    "offences": OFFENCES, "statuses": CASE_STATUSES, "case_roles": CASE_ROLES,
    "partner_access": PARTNER_ACCESS, "lead_sources": LEAD_SOURCES,
    "lead_statuses": LEAD_STATUSES, "lead_outcomes": LEAD_OUTCOMES,
}


@bp.context_processor
def _labels():
    return {"inv": LABELS}


def _form(name: str, default: str = "") -> str:
    return request.form.get(name, default)


def _act(case_id: int, section: str, done: str, call, **kwargs):
    """Run one change from the case page; show the page again if it was refused as input."""
    actor = current_actor()
    try:
        call(actor=actor, case_id=case_id, **kwargs)
    except (Invalid, Conflict) as err:
        page = service.case_page(actor=actor, case_id=case_id)
        return render_template("investigations/case.html", page=page, case=page.case,
                               failed=section, error=err, form=request.form), err.status
    flash(done, "success")
    return redirect(url_for(".case", case_id=case_id, _anchor=section))


@bp.get("")
@signed_in
def cases():
    args = request.args
    result = service.list_cases(actor=current_actor(), status=args.get("status") or None,
                                offence=args.get("offence") or None, q=args.get("q") or None,
                                page=args.get("page") or 1)
    return render_template("investigations/list.html", result=result, filters=args,
                           can_open=current_actor().has_role(*OPENER_ROLES))


@bp.route("/new", methods=["GET", "POST"])
@requires(*OPENER_ROLES)
def new_case():
    if request.method == "GET":
        return render_template("investigations/new.html", form={}, offences=[], error=None)
    offences = request.form.getlist("offences")
    try:
        case = service.open_case(actor=current_actor(), title=_form("title"), offences=offences,
                                 summary=_form("summary"))
    except Invalid as err:
        return render_template("investigations/new.html", form=request.form, offences=offences,
                               error=err), 422
    flash(f"Case {case.number} opened.", "success")
    return redirect(url_for(".case", case_id=case.id))


@bp.get("/<int:case_id>")
@signed_in
def case(case_id: int):
    page = service.case_page(actor=current_actor(), case_id=case_id)
    return render_template("investigations/case.html", page=page, case=page.case, failed=None,
                           error=None, form={})


@bp.post("/<int:case_id>/status")
@signed_in
def change_status(case_id: int):
    return _act(case_id, "status", "Status changed.", service.change_status,
                status=_form("status"), reason=_form("reason"))


@bp.post("/<int:case_id>/members")
@signed_in
def add_member(case_id: int):
    return _act(case_id, "team", "Added to the team.", service.add_member,
                username=_form("username"), case_role=_form("case_role"))


@bp.post("/<int:case_id>/members/<int:member_id>/remove")
@signed_in
def remove_member(case_id: int, member_id: int):
    return _act(case_id, "team", "Taken off the team.", service.remove_member,
                member_id=member_id)


@bp.post("/<int:case_id>/lead")
@signed_in
def change_lead(case_id: int):
    return _act(case_id, "team", "Lead investigator changed.", service.change_lead,
                user_id=_form("user_id"))


@bp.post("/<int:case_id>/partners")
@signed_in
def grant_partner(case_id: int):
    return _act(case_id, "partners", "Access granted.", service.grant_partner,
                agency_id=_form("agency_id"), access=_form("access"))


@bp.post("/<int:case_id>/partners/<int:grant_id>/revoke")
@signed_in
def revoke_partner(case_id: int, grant_id: int):
    return _act(case_id, "partners", "Access revoked.", service.revoke_partner,
                grant_id=grant_id)


@bp.post("/<int:case_id>/leads")
@signed_in
def add_lead(case_id: int):
    return _act(case_id, "leads", "Lead recorded.", service.add_lead,
                title=_form("title"), source=_form("source"), details=_form("details"),
                source_reference=_form("source_reference"),
                received_on=_form("received_on") or None,
                assignee_id=_form("assignee_id") or None)


@bp.post("/<int:case_id>/leads/<int:lead_id>/assign")
@signed_in
def assign_lead(case_id: int, lead_id: int):
    return _act(case_id, "leads", "Lead assigned.", service.assign_lead, lead_id=lead_id,
                assignee_id=_form("assignee_id"))


@bp.post("/<int:case_id>/leads/<int:lead_id>/worked")
@signed_in
def mark_lead_worked(case_id: int, lead_id: int):
    return _act(case_id, "leads", "Lead marked worked.", service.mark_lead_worked,
                lead_id=lead_id)


@bp.post("/<int:case_id>/leads/<int:lead_id>/close")
@signed_in
def close_lead(case_id: int, lead_id: int):
    return _act(case_id, "leads", "Lead closed.", service.close_lead, lead_id=lead_id,
                outcome=_form("outcome"), outcome_notes=_form("outcome_notes"))


@bp.post("/<int:case_id>/tasks")
@signed_in
def add_task(case_id: int):
    return _act(case_id, "tasks", "Task set.", service.add_task, title=_form("title"),
                assignee_id=_form("assignee_id") or None, due_on=_form("due_on") or None)


@bp.post("/<int:case_id>/tasks/<int:task_id>/done")
@signed_in
def complete_task(case_id: int, task_id: int):
    return _act(case_id, "tasks", "Task done.", service.complete_task, task_id=task_id)


@bp.post("/<int:case_id>/notes")
@signed_in
def add_note(case_id: int):
    return _act(case_id, "notes", "Note added.", service.add_note, body=_form("body"),
                event_on=_form("event_on") or None)
