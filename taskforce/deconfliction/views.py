"""Deconfliction pages. Thin: parse the form, call the service, render or redirect.

Every hit is rendered from schemas.hit_out, the one serializer that redacts the
other side, so a page cannot show more than the API does.
"""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from taskforce.accounts.permissions import current_actor, requires, signed_in
from taskforce.deconfliction import schemas, service
from taskforce.deconfliction.models import HIT_KINDS, HIT_STATUSES, RESOLUTIONS
from taskforce.deconfliction.policy import CHECK_ROLES, is_coordinator
from taskforce.errors import Conflict, Invalid
from taskforce.graph.identifiers import KINDS

bp = Blueprint("deconfliction", __name__, url_prefix="/deconfliction")

LABELS = {"kinds": HIT_KINDS, "statuses": HIT_STATUSES, "resolutions": RESOLUTIONS,
          "identifier_kinds": list(KINDS)}
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
