"""What the deconfliction API takes and gives, and THE serializer of a hit.

`hit_out(view, actor)` is the one place a hit becomes something a person reads,
for the JSON API and for the pages alike. A side the actor is on (policy.own_sides)
shows its case number and the identifier as that case entered it; the other side
shows only its agency's name, its point of contact (name, phone, email) and the
kind of identifier that matched. Never the other case's number, title, id or
entity, nor the identifier's value. Coordinators who are on neither side see both
sides that way. `match_out` does the same for a check that registers nothing,
with the asker's own input on their side.
"""
from __future__ import annotations

from typing import Any

from apiflask import Schema
from apiflask.fields import Boolean, DateTime, Dict, Float, Integer, List, Nested, Raw, String
from apiflask.validators import Length, OneOf, Range

from taskforce.accounts.permissions import Actor
from taskforce.deconfliction import service
from taskforce.deconfliction.matching import Match
from taskforce.deconfliction.models import (
    HIT_KINDS,
    HIT_STATUSES,
    OPERATION_KINDS,
    RESOLUTIONS,
    Hit,
    HitEvent,
)
from taskforce.graph.identifiers import KINDS

HIT_FILTERS = ["open", *HIT_STATUSES]


# --------------------------------------------------------------------------- the serializer

def _poc(name: str, phone: str, email: str) -> dict[str, str]:
    return {"name": name, "phone": phone or "", "email": email or ""}


def side_out(view: service.HitView, side: str) -> dict[str, Any]:
    hit = view.hit
    s = hit.side(side)
    out: dict[str, Any] = {
        "side": side,
        "mine": side in view.own_sides,
        "agency": s["agency"].name,
        "identifier_kind": s["identifier_kind"],
        "poc": _poc(s["poc_name"], s["poc_phone"], s["poc_email"]),
        "acknowledged_at": s["acknowledged_at"],
    }
    if s["operation_kind"]:
        # an operation hit: the kind and window of each side, never its place or case
        out["operation_kind"] = s["operation_kind"]
        out["operation_kind_label"] = OPERATION_KINDS.get(s["operation_kind"], "")
        out["starts_at"] = s["starts_at"]
        out["ends_at"] = s["ends_at"]
    if out["mine"]:
        case = hit.a_case if side == "a" else hit.b_case
        if case is not None:
            out["case"] = {"id": case.id, "number": case.number}
        if s["operation_kind"]:
            op = hit.a_operation if side == "a" else hit.b_operation
            if op is not None:
                out["operation"] = {"id": op.id, "name": op.name, "address": op.address,
                                    "latitude": op.latitude, "longitude": op.longitude,
                                    "radius_m": op.radius_m}
        else:
            out["identifier"] = view.displays.get(side)
    return out


def _by(event: HitEvent, actor: Actor) -> str:
    if event.user_id is None:
        return "taskforce"
    if event.agency_id is not None and event.agency_id == actor.agency_id:
        return event.user.full_name if event.user else "(unknown)"
    return event.agency.name if event.agency else "another agency"


def event_out(event: HitEvent, actor: Actor) -> dict[str, Any]:
    return {"at": event.at, "action": event.action, "from_status": event.from_status,
            "to_status": event.to_status, "note": event.note or "", "by": _by(event, actor)}


def hit_out(view: service.HitView, actor: Actor) -> dict[str, Any]:
    """A hit as `actor` may see it (view was built for the same actor by the service)."""
    hit: Hit = view.hit
    order = sorted(("a", "b"), key=lambda s: (s not in view.own_sides, s))
    return {
        "id": hit.id,
        "number": hit.number,
        "kind": hit.kind,
        "kind_label": HIT_KINDS[hit.kind],
        "score": round(hit.score, 3),
        "status": hit.status,
        "status_label": HIT_STATUSES[hit.status],
        "resolution": hit.resolution,
        "resolution_label": RESOLUTIONS.get(hit.resolution or "", None),
        "resolution_note": hit.resolution_note or "",
        "created_at": hit.created_at,
        "updated_at": hit.updated_at,
        "acknowledged_at": hit.acknowledged_at,
        "resolved_at": hit.resolved_at,
        "sides": [side_out(view, s) for s in order],
        "actions": list(view.actions),
        "events": [event_out(e, actor) for e in view.events],
    }


def match_out(match: Match, checked_at) -> dict[str, Any]:
    """One result of a check: the asker's own identifier, and the other side reduced."""
    other = match.other
    return {
        "kind": match.kind,
        "kind_label": HIT_KINDS[match.kind],
        "score": round(match.score, 3),
        "identifier_kind": match.probe.kind,
        "identifier": match.probe.display,
        "time": checked_at,
        "other": {
            "agency": other.agency.name,
            "identifier_kind": other.kind,
            "poc": _poc(other.poc_name, other.poc_phone, other.poc_email),
        },
    }


def check_out(result: service.CheckResult) -> dict[str, Any]:
    return {"checked": len(result.checked),
            "matches": [match_out(m, result.checked_at) for m in result.matches]}


def registration_out(reg) -> dict[str, Any]:
    """A registration, for its own case (the caller registered it or may change its case)."""
    return {"id": reg.id, "kind": reg.kind, "identifier": reg.display_hint,
            "case_id": reg.case_id, "entity_id": reg.entity_id,
            "poc": _poc(reg.poc_name, reg.poc_phone, reg.poc_email),
            "registered_at": reg.registered_at, "renewed_at": reg.renewed_at,
            "expires_at": reg.expires_at}


def notification_out(n) -> dict[str, Any]:
    return {"id": n.id, "kind": n.kind, "hit_id": n.hit_id,
            "hit_number": n.hit.number if n.hit is not None else None,
            "url": f"/deconfliction/hits/{n.hit_id}" if n.hit_id else None,
            "created_at": n.created_at, "read_at": n.read_at}


# --------------------------------------------------------------------------- in

class IdentifierIn(Schema):
    kind = String(required=True, validate=OneOf(list(KINDS)))
    value = String(required=True, validate=Length(min=1, max=512),
                   metadata={"description": "as written; normalized by the server"})
    dob = String(metadata={"description": "person: date of birth (YYYY-MM-DD)"})
    state = String(validate=Length(max=40), metadata={"description": "vehicle_plate: state"})
    platform = String(validate=Length(max=100),
                      metadata={"description": "online_account, ad: the platform"})
    routing = String(validate=Length(max=20), metadata={"description": "bank_account: ABA"})
    chain = String(validate=Length(max=40), metadata={"description": "crypto_wallet: chain"})
    region = String(validate=Length(max=2),
                    metadata={"description": "phone: default country (ISO 3166 alpha-2)"})


class PocIn(Schema):
    user_id = Integer(metadata={"description": "a user whose name and email to use"})
    name = String(validate=Length(max=200))
    phone = String(validate=Length(max=60))
    email = String(validate=Length(max=254))


class CheckIn(Schema):
    identifiers = List(Nested(IdentifierIn), required=True,
                       validate=Length(min=1, max=service.IDENTIFIERS_MAX))


class RegisterIn(Schema):
    case_id = Integer(required=True)
    identifiers = List(Nested(IdentifierIn), required=True,
                       validate=Length(min=1, max=service.IDENTIFIERS_MAX))
    entity_id = Integer(load_default=None, allow_none=True,
                        metadata={"description": "the case's entity they identify"})
    poc = Nested(PocIn, load_default=None, allow_none=True,
                 metadata={"description": "point of contact; default: the case's lead "
                                          "investigator"})


class RenewIn(Schema):
    days = Integer(load_default=None, allow_none=True,
                   validate=Range(min=1, max=service.TTL_MAX_DAYS),
                   metadata={"description": "default: the full time to live"})
    poc = Nested(PocIn, load_default=None, allow_none=True)


class HitQuery(Schema):
    status = String(validate=OneOf(HIT_FILTERS),
                    metadata={"description": "open = anything not resolved"})
    page = Integer(load_default=1, validate=Range(min=1))
    per_page = Integer(load_default=50, validate=Range(min=1, max=service.PER_PAGE_MAX))


class ResolveIn(Schema):
    resolution = String(required=True, validate=OneOf(list(RESOLUTIONS)))
    note = String(load_default="", validate=Length(max=service.NOTE_MAX),
                  metadata={"description": "read by both sides and the coordinators"})


class NotificationsReadIn(Schema):
    ids = List(Integer(), load_default=None)
    all = Boolean(load_default=False)


# --------------------------------------------------------------------------- out

class PocOut(Schema):
    name = String()
    phone = String()
    email = String()


class CaseRefOut(Schema):
    id = Integer()
    number = String()


class OwnOperationOut(Schema):
    id = Integer()
    name = String()
    address = String()
    latitude = Float()
    longitude = Float()
    radius_m = Integer()


class SideOut(Schema):
    side = String()
    mine = Boolean(metadata={"description": "your side: only then case and identifier"})
    agency = String()
    identifier_kind = String(metadata={"description": "\"operation\" for operation hits"})
    poc = Nested(PocOut)
    acknowledged_at = DateTime(allow_none=True)
    case = Nested(CaseRefOut, metadata={"description": "your side only"})
    identifier = String(allow_none=True, metadata={"description": "your side only"})
    operation_kind = String(metadata={"description": "operation hits: the kind of operation"})
    operation_kind_label = String()
    starts_at = DateTime(metadata={"description": "operation hits: the window's start"})
    ends_at = DateTime(metadata={"description": "operation hits: the window's end"})
    operation = Nested(OwnOperationOut, metadata={
        "description": "operation hits, your side only: where and how wide"})


class EventOut(Schema):
    at = DateTime()
    action = String()
    from_status = String(allow_none=True)
    to_status = String(allow_none=True)
    note = String()
    by = String(metadata={"description": "a name within your agency, else the agency"})


class HitOut(Schema):
    id = Integer()
    number = String()
    kind = String()
    kind_label = String()
    score = Float()
    status = String()
    status_label = String()
    resolution = String(allow_none=True)
    resolution_label = String(allow_none=True)
    resolution_note = String()
    created_at = DateTime()
    updated_at = DateTime()
    acknowledged_at = DateTime(allow_none=True)
    resolved_at = DateTime(allow_none=True)
    sides = List(Nested(SideOut))
    actions = List(String())
    events = List(Nested(EventOut))


class HitItemOut(HitOut):
    """A hit in a list (the same fields; its own name in the OpenAPI description)."""


class HitListOut(Schema):
    items = List(Nested(HitItemOut))
    total = Integer()
    page = Integer()
    per_page = Integer()


class MatchOtherOut(Schema):
    agency = String()
    identifier_kind = String()
    poc = Nested(PocOut)


class MatchOut(Schema):
    kind = String()
    kind_label = String()
    score = Float()
    identifier_kind = String()
    identifier = String(metadata={"description": "what you asked about"})
    time = DateTime()
    other = Nested(MatchOtherOut)


class CheckOut(Schema):
    checked = Integer()
    matches = List(Nested(MatchOut))


class RegistrationOut(Schema):
    id = Integer()
    kind = String()
    identifier = String(allow_none=True,
                        metadata={"description": "null when the blind index is on"})
    case_id = Integer()
    entity_id = Integer(allow_none=True)
    poc = Nested(PocOut)
    registered_at = DateTime()
    renewed_at = DateTime(allow_none=True)
    expires_at = DateTime()


class RegistrationItemOut(RegistrationOut):
    """A registration in a list (its own name in the OpenAPI description)."""


class RegisterOut(Schema):
    registrations = List(Nested(RegistrationItemOut))
    created = Integer()
    renewed = Integer()
    hits = List(Nested(HitItemOut))


class NotificationOut(Schema):
    id = Integer()
    kind = String()
    hit_id = Integer(allow_none=True)
    hit_number = String(allow_none=True)
    url = String(allow_none=True)
    created_at = DateTime()
    read_at = DateTime(allow_none=True)


class NotificationsOut(Schema):
    unread = Integer()
    items = List(Nested(NotificationOut))


class MarkedOut(Schema):
    marked = Integer()
    unread = Integer()


# --------------------------------------------------------------------------- operations

def operation_out(op) -> dict[str, Any]:
    """An operation, for its own people (policy.operation_access): everything."""
    return {"id": op.id, "kind": op.kind, "kind_label": OPERATION_KINDS[op.kind],
            "name": op.name or "", "agency": op.agency.name,
            "case": ({"id": op.case.id, "number": op.case.number} if op.case is not None
                     else None),
            "latitude": op.latitude, "longitude": op.longitude, "radius_m": op.radius_m,
            "address": op.address or "", "starts_at": op.starts_at, "ends_at": op.ends_at,
            "undercover": bool(op.undercover),
            "poc": _poc(op.poc_name, op.poc_phone, op.poc_email),
            "created_at": op.created_at, "cancelled_at": op.cancelled_at,
            "hit_count": op.hit_count or 0}


class OperationIn(Schema):
    kind = String(required=True, validate=OneOf(list(OPERATION_KINDS)))
    latitude = Float(required=True, validate=Range(min=-90, max=90),
                     metadata={"description": "WGS 84 (no geocoding: give coordinates)"})
    longitude = Float(required=True, validate=Range(min=-180, max=180))
    radius_m = Float(required=True, validate=Range(min=10, max=25_000),
                     metadata={"description": "metres around the point (10 to 25,000)"})
    starts_at = String(required=True, metadata={
        "description": "ISO 8601 with a time zone, e.g. 2026-05-01T21:00:00-05:00"})
    ends_at = String(required=True, metadata={
        "description": "ISO 8601 with a time zone; at most 14 days after the start"})
    case_id = Integer(load_default=None, allow_none=True,
                      metadata={"description": "the case it belongs to (contribute access)"})
    name = String(load_default="", validate=Length(max=200),
                  metadata={"description": "for your own people only"})
    address = String(load_default="", validate=Length(max=500),
                     metadata={"description": "the address the coordinates stand for; "
                                              "your own people only"})
    undercover = Boolean(load_default=False,
                         metadata={"description": "undercover officers present"})
    poc = Nested(PocIn, load_default=None, allow_none=True,
                 metadata={"description": "point of contact; default: you"})


class OperationQuery(Schema):
    when = String(load_default="upcoming", validate=OneOf(["upcoming", "all"]))
    page = Integer(load_default=1, validate=Range(min=1))
    per_page = Integer(load_default=50, validate=Range(min=1, max=200))


class OperationOut(Schema):
    id = Integer()
    kind = String()
    kind_label = String()
    name = String()
    agency = String()
    case = Nested(CaseRefOut, allow_none=True)
    latitude = Float()
    longitude = Float()
    radius_m = Integer()
    address = String()
    starts_at = DateTime()
    ends_at = DateTime()
    undercover = Boolean()
    poc = Nested(PocOut)
    created_at = DateTime()
    cancelled_at = DateTime(allow_none=True)
    hit_count = Integer(metadata={"description": "conflicts found with it"})


class OperationItemOut(OperationOut):
    """An operation in a list (its own name in the OpenAPI description)."""


class OperationListOut(Schema):
    items = List(Nested(OperationItemOut))
    total = Integer()
    page = Integer()
    per_page = Integer()


class SubmitOut(Schema):
    operation = Nested(OperationOut)
    hits = List(Nested(HitItemOut))


class OperationDetailOut(OperationOut):
    hits = List(Nested(HitItemOut))


class UpcomingOut(Schema):
    id = Integer()
    kind = String()
    kind_label = String()
    agency = String()
    latitude = Float()
    longitude = Float()
    radius_m = Integer()
    starts_at = DateTime()
    ends_at = DateTime()
    undercover = Boolean()
    poc = Nested(PocOut)
    in_conflict = Boolean(metadata={"description": "in an open operation hit"})


class AgencyAgeOut(Schema):
    agency = String()
    under_1d = Integer()
    _1_7d = Integer(data_key="1_7d")
    _7_30d = Integer(data_key="7_30d")
    over_30d = Integer()
    total = Integer()


class WeekOut(Schema):
    week = String(metadata={"description": "the Monday the week starts (UTC)"})
    hits = Dict(keys=String(), values=Integer())
    operations = Integer()
    operations_hit = Integer()
    registrations = Integer()
    operation_hit_rate = Float(allow_none=True)
    target_hits_per_1000 = Float(allow_none=True)
    ack_median_hours = Float(allow_none=True)
    ack_p90_hours = Float(allow_none=True)


class DashboardOut(Schema):
    at = DateTime()
    open_total = Integer()
    open_by_agency = List(Nested(AgencyAgeOut))
    upcoming = List(Nested(UpcomingOut))
    weeks = List(Nested(WeekOut))
    totals = Dict(keys=String(), values=Raw(allow_none=True))


def dashboard_out(d) -> dict[str, Any]:
    return {"at": d.at, "open_total": d.open_total,
            "open_by_agency": [{**row, "_1_7d": row["1_7d"], "_7_30d": row["7_30d"]}
                               for row in d.open_by_agency],
            "upcoming": d.upcoming, "weeks": d.weeks, "totals": d.totals}
