"""JSON API for survivor alerts: /api/v1/victims/alerts...

Thin: parse, call the service, serialise through schemas.alert_out (which shows the
survivor's name only where the service decided the caller may see it). An alert
that is not addressed to the caller answers 404, like one that does not exist.
"""
from __future__ import annotations

from apiflask import APIBlueprint

from taskforce.accounts.permissions import current_actor, requires, signed_in
from taskforce.victims import schemas, service
from taskforce.victims.policy import SPECIALIST
from taskforce.victims.schemas import AlertListOut, AlertOut, AlertQuery, CountOut, FollowUpIn

bp = APIBlueprint("victims_api", __name__, url_prefix="/api/v1/victims", tag="Survivor alerts")

NOT_FOUND = "No such alert, or it is not addressed to you"
REDACTED = ("The survivor's name is shown only to the case lead and to victim specialists "
            "with need to know (of the case's agency, on its team, or of a partner agency); "
            "everyone else sees the pseudonym. Of the contact case only its lead is shown.")


@bp.get("/alerts")
@signed_in
@bp.input(AlertQuery, location="query")
@bp.output(AlertListOut)
@bp.doc(summary="Survivor alerts addressed to you, newest first",
        description="Victim specialists: their agency's alerts. Case leads: the lead "
        "agency's alerts on their cases. " + REDACTED)
def list_alerts(query_data):
    actor = current_actor()
    result = service.list_alerts(actor=actor, **query_data)
    return {"items": [schemas.alert_out(v, with_follow_ups=False) for v in result.items],
            "total": result.total, "page": result.page, "per_page": result.per_page}


@bp.get("/alerts/count")
@signed_in
@bp.output(CountOut)
@bp.doc(summary="How many new alerts your agency has (polled by the nav badge)")
def count():
    return {"open": service.open_count(actor=current_actor())}


@bp.get("/alerts/<int:alert_id>")
@signed_in
@bp.output(AlertOut)
@bp.doc(summary="One alert with its follow-up", description=REDACTED,
        responses={404: NOT_FOUND})
def get_alert(alert_id: int):
    actor = current_actor()
    return schemas.alert_out(service.get_alert(actor=actor, alert_id=alert_id))


@bp.post("/alerts/<int:alert_id>/acknowledge")
@requires(SPECIALIST)
@bp.output(AlertOut)
@bp.doc(summary="Acknowledge an alert (victim specialists of the alerted agency)",
        responses={404: NOT_FOUND, 403: "Not a specialist of the alerted agency",
                   409: "Already acknowledged"})
def acknowledge(alert_id: int):
    actor = current_actor()
    return schemas.alert_out(service.acknowledge(actor=actor, alert_id=alert_id))


@bp.post("/alerts/<int:alert_id>/follow-ups")
@requires(SPECIALIST)
@bp.input(FollowUpIn)
@bp.output(AlertOut, status_code=201)
@bp.doc(summary="Record follow-up: contacted, services offered, referred, or a note",
        description="Acknowledges the alert too if nobody has yet. Who and when are kept "
        "and audited.",
        responses={404: NOT_FOUND, 403: "Not a specialist of the alerted agency"})
def follow_up(alert_id: int, json_data):
    actor = current_actor()
    view = service.record_follow_up(actor=actor, alert_id=alert_id, **json_data)
    return schemas.alert_out(view), 201
