"""JSON API for deconfliction: /api/v1/deconfliction/... and /api/v1/notifications.

Thin: parse, call the service, serialise through schemas.hit_out / match_out
(which redact the other side). Which hit or case the caller reaches is decided
by the service; a hit that does not concern the caller answers 404.
"""
from __future__ import annotations

from apiflask import APIBlueprint

from taskforce.accounts.permissions import current_actor, requires, signed_in
from taskforce.deconfliction import operations, schemas, service
from taskforce.deconfliction.policy import CHECK_ROLES, OPERATION_ROLES
from taskforce.deconfliction.schemas import (
    CheckIn,
    CheckOut,
    DashboardOut,
    HitListOut,
    HitOut,
    HitQuery,
    MarkedOut,
    NotificationsOut,
    NotificationsReadIn,
    OperationDetailOut,
    OperationIn,
    OperationListOut,
    OperationOut,
    OperationQuery,
    RegisterIn,
    RegisterOut,
    RegistrationOut,
    RenewIn,
    ResolveIn,
    SubmitOut,
)

bp = APIBlueprint("deconfliction_api", __name__, url_prefix="/api/v1", tag="Deconfliction")

HIT_NOT_FOUND = "No such hit, or it does not concern you"
CONFLICT = "The hit is not in a state that allows this (e.g. not yet acknowledged)"
REDACTED = ("The other side shows only its agency, point of contact and the kind of "
            "identifier that matched; never its case, nor the identifier.")


@bp.post("/deconfliction/check")
@requires(*CHECK_ROLES)
@bp.input(CheckIn)
@bp.output(CheckOut)
@bp.doc(summary="Check identifiers against every agency without registering them",
        description="\"Check before I open a case\": nothing is stored and nobody else is "
        "told; the check itself is audited (kinds and counts, not values). " + REDACTED)
def check(json_data):
    result = service.check_only(actor=current_actor(), identifiers=json_data["identifiers"])
    return schemas.check_out(result)


@bp.post("/deconfliction/registrations")
@signed_in
@bp.input(RegisterIn)
@bp.output(RegisterOut, status_code=201)
@bp.doc(summary="Register a case's identifiers in the cross-agency index",
        description="Needs contribute access to the case. Each identifier is checked at once "
        "against every other case's live registrations; the hits found are returned "
        "and both sides and the coordinators are notified. " + REDACTED,
        responses={404: "No such case, or it is not shared with you"})
def register(json_data):
    actor = current_actor()
    result = service.register(actor=actor, **json_data)
    views = service.hit_views(actor=actor, hits=result.hits)
    return {"registrations": [schemas.registration_out(r) for r in result.registrations],
            "created": result.created, "renewed": result.renewed,
            "hits": [schemas.hit_out(v, actor) for v in views]}, 201


@bp.post("/deconfliction/registrations/<int:registration_id>/renew")
@signed_in
@bp.input(RenewIn)
@bp.output(RegistrationOut)
@bp.doc(summary="Renew a registration (and optionally change its point of contact)",
        responses={404: "No such registration, or not in a case you may change"})
def renew(registration_id: int, json_data):
    reg = service.renew(actor=current_actor(), registration_id=registration_id, **json_data)
    return schemas.registration_out(reg)


@bp.get("/deconfliction/hits")
@signed_in
@bp.input(HitQuery, location="query")
@bp.output(HitListOut)
@bp.doc(summary="Your hits (coordinators: all hits), newest first", description=REDACTED)
def list_hits(query_data):
    actor = current_actor()
    result = service.list_hits(actor=actor, **query_data)
    return {"items": [schemas.hit_out(v, actor) for v in result.items], "total": result.total,
            "page": result.page, "per_page": result.per_page}


@bp.get("/deconfliction/hits/<int:hit_id>")
@signed_in
@bp.output(HitOut)
@bp.doc(summary="A hit with its history", description=REDACTED,
        responses={404: HIT_NOT_FOUND})
def get_hit(hit_id: int):
    actor = current_actor()
    return schemas.hit_out(service.get_hit(actor=actor, hit_id=hit_id), actor)


@bp.post("/deconfliction/hits/<int:hit_id>/acknowledge")
@signed_in
@bp.output(HitOut)
@bp.doc(summary="Acknowledge a hit (for your side)",
        responses={404: HIT_NOT_FOUND, 409: CONFLICT})
def acknowledge(hit_id: int):
    actor = current_actor()
    return schemas.hit_out(service.acknowledge(actor=actor, hit_id=hit_id), actor)


@bp.post("/deconfliction/hits/<int:hit_id>/coordinate")
@signed_in
@bp.output(HitOut)
@bp.doc(summary="Mark an acknowledged hit as being coordinated",
        responses={404: HIT_NOT_FOUND, 409: CONFLICT})
def coordinate(hit_id: int):
    actor = current_actor()
    return schemas.hit_out(service.start_coordinating(actor=actor, hit_id=hit_id), actor)


@bp.post("/deconfliction/hits/<int:hit_id>/resolve")
@signed_in
@bp.input(ResolveIn)
@bp.output(HitOut)
@bp.doc(summary="Resolve a hit with how it ended",
        responses={404: HIT_NOT_FOUND, 409: CONFLICT})
def resolve(hit_id: int, json_data):
    actor = current_actor()
    return schemas.hit_out(service.resolve(actor=actor, hit_id=hit_id, **json_data), actor)


@bp.get("/notifications")
@signed_in
@bp.output(NotificationsOut)
@bp.doc(summary="Your unread count and latest notifications (polled by the nav badge)")
def notifications():
    result = service.list_notifications(actor=current_actor())
    return {"unread": result.unread,
            "items": [schemas.notification_out(n) for n in result.items]}


@bp.post("/notifications")
@signed_in
@bp.input(NotificationsReadIn)
@bp.output(MarkedOut)
@bp.doc(summary="Mark notifications read: {\"ids\": [...]} or {\"all\": true}")
def mark_read(json_data):
    actor = current_actor()
    marked = service.mark_notifications_read(actor=actor, ids=json_data.get("ids"),
                                             all=json_data.get("all", False))
    return {"marked": marked, "unread": service.list_notifications(actor=actor, limit=0).unread}


# --------------------------------------------------------------------------- operations

OP_REDACTED = ("A hit shows the other side only by its agency, point of contact, kind of "
               "operation and time window; never its address, coordinates, name or case.")
OP_NOT_FOUND = "No such operation, or it is not one of yours"


@bp.post("/deconfliction/operations")
@requires(*OPERATION_ROLES)
@bp.input(OperationIn)
@bp.output(SubmitOut, status_code=201)
@bp.doc(summary="Plan an operation and check it against every other agency's",
        description="Checked at once against every live operation of every other agency: "
        "overlapping windows and centres closer than the sum of the radii. Each conflict "
        "is a hit (kind \"operation\"), notified to both sides and the coordinators at "
        "once. " + OP_REDACTED,
        responses={404: "No such case, or it is not shared with you"})
def submit_operation(json_data):
    actor = current_actor()
    result = operations.submit(actor=actor, **json_data)
    views = service.hit_views(actor=actor, hits=result.hits)
    return {"operation": schemas.operation_out(result.operation),
            "hits": [schemas.hit_out(v, actor) for v in views]}, 201


@bp.get("/deconfliction/operations")
@signed_in
@bp.input(OperationQuery, location="query")
@bp.output(OperationListOut)
@bp.doc(summary="Your operations (yours, your cases', or your agency's as a supervisor)")
def list_operations(query_data):
    result = operations.list_operations(actor=current_actor(), **query_data)
    return {"items": [schemas.operation_out(o) for o in result.items], "total": result.total,
            "page": result.page, "per_page": result.per_page}


@bp.get("/deconfliction/operations/<int:operation_id>")
@signed_in
@bp.output(OperationDetailOut)
@bp.doc(summary="One of your operations, with its hits", description=OP_REDACTED,
        responses={404: OP_NOT_FOUND})
def get_operation(operation_id: int):
    actor = current_actor()
    op = operations.get_operation(actor=actor, operation_id=operation_id)
    hits = operations.operation_hits(actor=actor, operation=op)
    return {**schemas.operation_out(op), "hits": [schemas.hit_out(v, actor) for v in hits]}


@bp.post("/deconfliction/operations/<int:operation_id>/cancel")
@signed_in
@bp.output(OperationOut)
@bp.doc(summary="Call an operation off (it stops hitting at once)",
        responses={404: OP_NOT_FOUND, 409: "Already cancelled"})
def cancel_operation(operation_id: int):
    return schemas.operation_out(operations.cancel(actor=current_actor(),
                                                   operation_id=operation_id))


@bp.get("/deconfliction/dashboard")
@requires("coordinator")
@bp.output(DashboardOut)
@bp.doc(summary="The coordinator's dashboard figures",
        description="Open hits by age and agency, live operations of the next 72 hours "
        "(place, kind, agency, window, point of contact: no address, name or case), and "
        "week by week: hits by kind, operations and how many hit, target registrations, "
        "time to acknowledge.")
def dashboard():
    return schemas.dashboard_out(operations.dashboard(actor=current_actor()))
