"""Deconfliction pages. Thin: parse the form, call the service, render or redirect.

Every hit is rendered from schemas.hit_out, the one serializer that redacts the
other side, so a page cannot show more than the API does.
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from taskforce.accounts.permissions import current_actor, requires, signed_in
from taskforce.deconfliction import geo, operations, schemas, service
from taskforce.deconfliction.models import HIT_KINDS, HIT_STATUSES, OPERATION_KINDS, RESOLUTIONS
from taskforce.deconfliction.policy import (
    CHECK_ROLES,
    OPERATION_ROLES,
    can_submit_operation,
    is_coordinator,
    operation_access,
)
from taskforce.errors import Conflict, Invalid
from taskforce.graph.identifiers import KINDS
from taskforce.investigations.policy import WRITE

bp = Blueprint("deconfliction", __name__, url_prefix="/deconfliction")

LABELS = {"kinds": HIT_KINDS, "statuses": HIT_STATUSES, "resolutions": RESOLUTIONS,
          "identifier_kinds": list(KINDS), "operation_kinds": OPERATION_KINDS}
CHECK_LINES_MAX = 200


@bp.context_processor
def _labels():
    return {"dc": LABELS}


@bp.get("")
@signed_in
def hits():
    actor = current_actor()
    status = request.args.get("status") or "open"
    result = service.list_hits(actor=actor, status=None if status == "all" else status,
                               page=request.args.get("page") or 1)
    return render_template("deconfliction/hits.html", result=result, status=status,
                           items=[schemas.hit_out(v, actor) for v in result.items],
                           coordinator=is_coordinator(actor))


@bp.get("/hits/<int:hit_id>")
@signed_in
def hit(hit_id: int):
    actor = current_actor()
    view = service.get_hit(actor=actor, hit_id=hit_id)
    return render_template("deconfliction/hit.html", hit=schemas.hit_out(view, actor),
                           error=None, form={})


def _act(hit_id: int, done: str, call, **kwargs):
    actor = current_actor()
    try:
        call(actor=actor, hit_id=hit_id, **kwargs)
    except (Invalid, Conflict) as err:
        view = service.get_hit(actor=actor, hit_id=hit_id)
        return render_template("deconfliction/hit.html", hit=schemas.hit_out(view, actor),
                               error=err, form=request.form), err.status
    flash(done, "success")
    return redirect(url_for(".hit", hit_id=hit_id))


@bp.post("/hits/<int:hit_id>/acknowledge")
@signed_in
def acknowledge(hit_id: int):
    return _act(hit_id, "Hit acknowledged.", service.acknowledge)


@bp.post("/hits/<int:hit_id>/coordinate")
@signed_in
def coordinate(hit_id: int):
    return _act(hit_id, "Marked as coordinating.", service.start_coordinating)


@bp.post("/hits/<int:hit_id>/resolve")
@signed_in
def resolve(hit_id: int):
    return _act(hit_id, "Hit resolved.", service.resolve,
                resolution=request.form.get("resolution") or None,
                note=request.form.get("note", ""))


def _parse_lines(text: str) -> list[tuple[str, str]]:
    """One identifier a line, `kind: value` (person: `Jon Smith | 1990-04-12`)."""
    pairs = []
    for line in text.splitlines()[:CHECK_LINES_MAX + 1]:
        if not line.strip():
            continue
        kind, sep, value = line.partition(":")
        pairs.append((kind.strip().lower(), value.strip()) if sep else ("", line.strip()))
    return pairs


@bp.route("/check", methods=["GET", "POST"])
@requires(*CHECK_ROLES)
def check():
    if request.method == "GET":
        return render_template("deconfliction/check.html", result=None, error=None, text="")
    text = request.form.get("identifiers", "")
    try:
        result = service.check_only(actor=current_actor(), identifiers=_parse_lines(text))
    except Invalid as err:
        return render_template("deconfliction/check.html", result=None, error=err,
                               text=text), 422
    return render_template("deconfliction/check.html", result=schemas.check_out(result),
                           error=None, text="")


# --------------------------------------------------------------------------- operations

VENDOR = {  # served by the assets install step (scripts/services.py install assets)
    "leaflet_js": "vendor/leaflet/leaflet.js",
    "leaflet_css": "vendor/leaflet/leaflet.css",
    "chart_js": "vendor/chart.js/chart.umd.min.js",
}


def _vendor_present() -> dict[str, bool]:
    """Which vendored libraries are installed: without them the dashboard shows tables."""
    static = Path(current_app.static_folder or "")
    return {name: (static / rel).is_file() for name, rel in VENDOR.items()}


def _utc(value: str) -> str:
    """A form's datetime-local value is UTC (the form says so): mark it as such."""
    value = (value or "").strip()
    if value and "+" not in value[10:] and not value.upper().endswith("Z"):
        return value + "Z"
    return value


@bp.get("/operations")
@signed_in
def operations_list():
    actor = current_actor()
    when = request.args.get("when") or "upcoming"
    result = operations.list_operations(actor=actor, when=when,
                                        page=request.args.get("page") or 1)
    return render_template("deconfliction/operations.html", result=result, when=when,
                           items=[schemas.operation_out(o) for o in result.items],
                           can_submit=can_submit_operation(actor))


def _operation_form(form, error=None, status=200):
    actor = current_actor()
    return render_template("deconfliction/operation_form.html", form=form, error=error,
                           kinds=OPERATION_KINDS, cases=operations.case_choices(actor=actor),
                           radius=(geo.RADIUS_MIN_M, geo.RADIUS_MAX_M)), status


@bp.route("/operations/new", methods=["GET", "POST"])
@requires(*OPERATION_ROLES)
def operation_new():
    if request.method == "GET":
        return _operation_form({"radius_m": "150"})
    form = request.form
    poc = None
    if any(form.get(k) for k in ("poc_name", "poc_phone", "poc_email")):
        poc = {"name": form.get("poc_name", ""), "phone": form.get("poc_phone", ""),
               "email": form.get("poc_email", "")}
    try:
        result = operations.submit(
            actor=current_actor(), kind=form.get("kind") or None,
            latitude=form.get("latitude"), longitude=form.get("longitude"),
            radius_m=form.get("radius_m"), starts_at=_utc(form.get("starts_at", "")),
            ends_at=_utc(form.get("ends_at", "")), case_id=form.get("case_id") or None,
            name=form.get("name", ""), address=form.get("address", ""),
            undercover=form.get("undercover") == "on", poc=poc)
    except (Invalid, Conflict) as err:
        return _operation_form(form, err, err.status)
    if result.hits:
        flash(f"Operation planned. It conflicts with {len(result.hits)} other "
              f"operation{'' if len(result.hits) == 1 else 's'}: call the point of contact "
              "before you go.", "error")
    else:
        flash("Operation planned. No other agency has an operation there at that time.",
              "success")
    return redirect(url_for(".operation", operation_id=result.operation.id))


@bp.get("/operations/<int:operation_id>")
@signed_in
def operation(operation_id: int):
    actor = current_actor()
    op = operations.get_operation(actor=actor, operation_id=operation_id)
    hits = operations.operation_hits(actor=actor, operation=op)
    return render_template("deconfliction/operation.html", op=schemas.operation_out(op),
                           hits=[schemas.hit_out(v, actor) for v in hits],
                           live=op.live_at(service.now()),
                           can_change=operation_access(actor, op) >= WRITE)


@bp.post("/operations/<int:operation_id>/cancel")
@signed_in
def operation_cancel(operation_id: int):
    try:
        operations.cancel(actor=current_actor(), operation_id=operation_id)
    except Conflict as err:
        flash(err.message, "error")
    else:
        flash("Operation cancelled: it no longer conflicts with anything.", "success")
    return redirect(url_for(".operation", operation_id=operation_id))


@bp.get("/dashboard")
@requires("coordinator")
def dashboard():
    data = operations.dashboard(actor=current_actor())
    return render_template("deconfliction/dashboard.html", d=data,
                           vendor=_vendor_present(), vendor_paths=VENDOR,
                           age_buckets=[b for b, _ in operations.AGE_BUCKETS])
