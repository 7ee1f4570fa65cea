"""Survivor-alert pages. Thin: parse the form, call the service, render or redirect.

Every alert is rendered from schemas.alert_out, the one serializer that redacts,
so a page cannot show more than the API does.
"""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from taskforce.accounts.permissions import current_actor, requires, signed_in
from taskforce.errors import Conflict, Invalid
from taskforce.victims import schemas, service
from taskforce.victims.models import ALERT_STATUSES, FOLLOW_UP_ACTIONS
from taskforce.victims.policy import SPECIALIST

bp = Blueprint("victims", __name__, url_prefix="/victims")


@bp.context_processor
def _labels():
    return {"va": {"statuses": ALERT_STATUSES, "actions": FOLLOW_UP_ACTIONS}}


@bp.get("/alerts")
@signed_in
def alerts():
    actor = current_actor()
    status = request.args.get("status") or "new"
    result = service.list_alerts(actor=actor, status=None if status == "all" else status,
                                 page=request.args.get("page") or 1)
    return render_template("victims/alerts.html", result=result, status=status,
                           items=[schemas.alert_out(v, with_follow_ups=False)
                                  for v in result.items])


def _page(alert_id: int, *, error=None, form=None, status: int = 200):
    view = service.get_alert(actor=current_actor(), alert_id=alert_id)
    return render_template("victims/alert.html", alert=schemas.alert_out(view), error=error,
                           form=form or {}), status


@bp.get("/alerts/<int:alert_id>")
@signed_in
def alert(alert_id: int):
    return _page(alert_id)


@bp.post("/alerts/<int:alert_id>/acknowledge")
@requires(SPECIALIST)
def acknowledge(alert_id: int):
    try:
        service.acknowledge(actor=current_actor(), alert_id=alert_id)
    except Conflict as err:
        return _page(alert_id, error=err, status=err.status)
    flash("Alert acknowledged.", "success")
    return redirect(url_for(".alert", alert_id=alert_id))


@bp.post("/alerts/<int:alert_id>/follow-ups")
@requires(SPECIALIST)
def follow_up(alert_id: int):
    try:
        service.record_follow_up(actor=current_actor(), alert_id=alert_id,
                                 action=request.form.get("action") or None,
                                 note=request.form.get("note", ""))
    except Invalid as err:
        return _page(alert_id, error=err, form=request.form, status=err.status)
    flash("Follow-up recorded.", "success")
    return redirect(url_for(".alert", alert_id=alert_id))
