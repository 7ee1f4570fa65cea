"""What the survivor-alert API takes, and the one serializer that redacts.

Every alert leaves the application through `alert_out` (pages and API alike): the
survivor's name only when the service decided this viewer may see it (AlertView.
revealed, from policy.reveals_name); otherwise the pseudonym. The point of contact
is the contact case's lead; of that case nothing else is ever shown.
"""
from __future__ import annotations

from apiflask import Schema
from apiflask.fields import Boolean, DateTime, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range

from taskforce.victims.models import (
    ALERT_REASONS,
    ALERT_STATUSES,
    FOLLOW_UP_ACTIONS,
    AlertFollowUp,
)
from taskforce.victims.service import NOTE_MAX, PER_PAGE_MAX, AlertView


def follow_up_out(f: AlertFollowUp) -> dict:
    return {"id": f.id, "action": f.action, "action_label": FOLLOW_UP_ACTIONS[f.action],
            "note": f.note, "by": f.by.full_name if f.by else None, "at": f.at}


def alert_out(view: AlertView, *, with_follow_ups: bool = True) -> dict:
    a = view.alert
    out = {
        "id": a.id,
        "number": a.number,
        "status": a.status,
        "status_label": ALERT_STATUSES[a.status],
        "reason": a.reason,
        "reason_label": ALERT_REASONS[a.reason],
        "why": a.why,
        "link_type": a.link_type,
        "survivor": a.survivor,
        "minor": a.minor,
        "pseudonym": view.pseudonym,
        "name": view.name if view.revealed else None,
        "label": view.subject_label,
        "revealed": view.revealed,
        "case": ({"id": view.case.id, "number": view.case_number}
                 if view.case is not None and view.case_number else None),
        "poc": dict(view.poc),
        "created_at": a.created_at,
        "acknowledged_at": a.acknowledged_at,
        "acknowledged_by": a.acknowledged_by.full_name if a.acknowledged_by else None,
        "can_act": view.can_act,
    }
    if with_follow_ups:
        out["follow_ups"] = [follow_up_out(f) for f in a.follow_ups]
    return out


class AlertPocOut(Schema):
    name = String()
    agency = String()
    phone = String()
    email = String()


class AlertCaseOut(Schema):
    id = Integer()
    number = String()


class AlertFollowUpOut(Schema):
    id = Integer()
    action = String()
    action_label = String()
    note = String()
    by = String(allow_none=True)
    at = DateTime()


class AlertOut(Schema):
    id = Integer()
    number = String(metadata={"description": "SA-<year>-<6 digits>"})
    status = String(metadata={"enum": list(ALERT_STATUSES)})
    status_label = String()
    reason = String(metadata={"enum": list(ALERT_REASONS)})
    reason_label = String()
    why = String(metadata={"description": "which kind of link, e.g. 'one link from a case "
                                          "entity (CALLED)'"})
    link_type = String(allow_none=True)
    survivor = Boolean()
    minor = Boolean()
    pseudonym = String()
    name = String(allow_none=True, metadata={"description": "only for the case lead and the "
                                                            "specialists with need to know"})
    label = String(metadata={"description": "the name when revealed, else the pseudonym"})
    revealed = Boolean()
    case = Nested(AlertCaseOut, allow_none=True)
    poc = Nested(AlertPocOut, metadata={"description": "the contact case's lead investigator"})
    created_at = DateTime()
    acknowledged_at = DateTime(allow_none=True)
    acknowledged_by = String(allow_none=True)
    can_act = Boolean()
    follow_ups = List(Nested(AlertFollowUpOut))


class AlertListOut(Schema):
    items = List(Nested(AlertOut))
    total = Integer()
    page = Integer()
    per_page = Integer()


class AlertQuery(Schema):
    status = String(load_default=None, validate=OneOf(list(ALERT_STATUSES)))
    page = Integer(load_default=1, validate=Range(min=1))
    per_page = Integer(load_default=50, validate=Range(min=1, max=PER_PAGE_MAX))


class CountOut(Schema):
    open = Integer(metadata={"description": "new alerts addressed to your agency"})


class FollowUpIn(Schema):
    action = String(required=True, validate=OneOf(list(FOLLOW_UP_ACTIONS)))
    note = String(load_default="", validate=Length(max=NOTE_MAX))


__all__ = ["AlertListOut", "AlertOut", "AlertQuery", "CountOut", "FollowUpIn",
           "alert_out", "follow_up_out"]
