"""The case's "Entities & links" page. Thin: parse the form, call the service,
render what schemas.py serialised for this actor (survivors redacted there).

A form the service refuses as bad input (Invalid) or as conflicting with the
case's state (Conflict) shows the page again with the message beside that form
and the 422/409 status; access refusals go to the one error handler.
"""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from taskforce.accounts.permissions import current_actor, signed_in
from taskforce.errors import Conflict, Invalid
from taskforce.graph import schemas, service
from taskforce.graph.models import (
    ENTITY_KINDS,
    IDENTIFIER_KINDS_BY_ENTITY,
    LINK_TYPES,
    LOCATION_KINDS,
    PERSON_ROLES,
    PROVENANCE_KINDS,
    SEXES,
)

bp = Blueprint("graph", __name__)

LABELS = {
    "entity_kinds": ENTITY_KINDS, "person_roles": PERSON_ROLES, "link_types": LINK_TYPES,
    "provenance_kinds": PROVENANCE_KINDS, "location_kinds": LOCATION_KINDS, "sexes": SEXES,
    "identifier_kinds": sorted({k for kinds in IDENTIFIER_KINDS_BY_ENTITY.values()
                                for k in kinds}),
}

# Form fields that become entity details (props), by name.
_PROP_FIELDS = ("dob", "sex", "aliases", "address", "location_kind", "lat", "lon", "platform",
                "handle", "make", "model", "color", "year", "notes")


@bp.context_processor
def _labels():
    return {"graph_labels": LABELS}


def _form(name: str) -> str:
    return request.form.get(name, "").strip()


def _render(case_id: int, *, failed: str | None = None, error=None, status: int = 200):
    actor = current_actor()
    net = service.case_network(actor=actor, case_id=case_id)
    data = schemas.network_out(net.case, net.entities, net.links, actor=actor)
    return render_template("graph/network.html", case=net.case, network=data,
                           can_contribute=net.can_contribute, failed=failed, error=error,
                           form=request.form if failed else {}), status


def _act(case_id: int, section: str, done: str, call, **kwargs):
    try:
        call(actor=current_actor(), case_id=case_id, **kwargs)
    except (Invalid, Conflict) as err:
        return _render(case_id, failed=section, error=err, status=err.status)
    flash(done, "success")
    return redirect(url_for(".network", case_id=case_id, _anchor=section))


@bp.get("/cases/<int:case_id>/network")
@signed_in
def network(case_id: int):
    return _render(case_id)


@bp.post("/cases/<int:case_id>/network/entities")
@signed_in
def add_entity(case_id: int):
    identifiers = []
    for i in range(2):
        kind, value = _form(f"identifier_kind_{i}"), _form(f"identifier_value_{i}")
        if value:
            identifiers.append({"kind": kind, "value": value})
    props = {name: _form(name) for name in _PROP_FIELDS if _form(name)}
    return _act(case_id, "entities", "Entity added.", service.add_entity, kind=_form("kind"),
                label=_form("label"), identifiers=identifiers, props=props,
                case_role=_form("case_role") or None)


@bp.post("/cases/<int:case_id>/network/links")
@signed_in
def add_link(case_id: int):
    return _act(case_id, "links", "Link recorded.", service.add_link,
                source_id=_form("source_id"), target_id=_form("target_id"), type=_form("type"),
                provenance_kind=_form("provenance_kind") or "manual",
                provenance_ref=_form("provenance_ref") or None,
                first_seen=_form("first_seen") or None, last_seen=_form("last_seen") or None,
                confidence=_form("confidence") or None, count=_form("count") or None,
                amount=_form("amount") or None)
