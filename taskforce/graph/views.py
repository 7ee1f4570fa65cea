"""The case's "Entities & links" page. Thin: parse the form, call the service,
render what schemas.py serialised for this actor (survivors redacted there).

A form the service refuses as bad input (Invalid) or as conflicting with the
case's state (Conflict) shows the page again with the message beside that form
and the 422/409 status; access refusals go to the one error handler.
"""
from __future__ import annotations

from pathlib import Path

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)

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


# The graph page's JavaScript libraries, copied from npm into static/vendor/ by
# `scripts/services.py install assets` (gitignored). Without them the page still
# works (tables, forms, timeline) and says the graph library is not installed.
GRAPH_SCRIPTS = ("vendor/cytoscape/cytoscape.min.js", "vendor/cytoscape/layout-base.js",
                 "vendor/cytoscape/cose-base.js", "vendor/cytoscape/cytoscape-fcose.js")
CHART_SCRIPT = "vendor/chart.js/chart.umd.min.js"
# The graph query API (graph_api blueprint), which the page's script asks.
GRAPH_API = "/api/v1/graph"


def _static_exists(filename: str) -> bool:
    return (Path(current_app.static_folder or "") / filename).is_file()


def _graph_elements(data: dict) -> dict:
    """The case network drawn first, in the graph query API's shapes (nodes and
    edges by database id), from what schemas.network_out already redacted."""
    case_id = data["case_id"]
    nodes = [{"id": e["id"], "kind": e["kind"], "label": e["label"], "survivor": e["survivor"],
              "minor": e["minor"], "redacted": e["redacted"], "role": e.get("role"),
              "cases": [case_id]} for e in data["entities"]]
    edges = [{"id": lk["id"], "type": lk["type"], "source": lk["source"]["id"],
              "target": lk["target"]["id"], "case_id": case_id,
              "first_seen": lk["first_seen"].isoformat() if lk["first_seen"] else None,
              "last_seen": lk["last_seen"].isoformat() if lk["last_seen"] else None,
              "confidence": lk["confidence"], "count": lk["count"], "amount": lk["amount"]}
             for lk in data["links"]]
    return {"nodes": nodes, "edges": edges}


def _timeline(data: dict) -> list[dict]:
    """The case's dated links, oldest first (a link seen over a span shows once,
    at its first date, with its last)."""
    dated = [lk for lk in data["links"] if lk["first_seen"] or lk["last_seen"]]
    return sorted(dated, key=lambda lk: (lk["first_seen"] or lk["last_seen"], lk["id"]))


def _render(case_id: int, *, failed: str | None = None, error=None, status: int = 200):
    actor = current_actor()
    net = service.case_network(actor=actor, case_id=case_id)
    data = schemas.network_out(net.case, net.entities, net.links, actor=actor)
    graph = {"case_id": net.case.id, "case_number": net.case.number, "api": GRAPH_API, **_graph_elements(data),
             "kinds": ENTITY_KINDS, "link_types": LINK_TYPES}
    return render_template("graph/network.html", case=net.case, network=data,
                           can_contribute=net.can_contribute, failed=failed, error=error,
                           form=request.form if failed else {}, graph=graph,
                           timeline=_timeline(data),
                           # on request only: it compares every case the reader may read
                           duplicates=_duplicates(actor, net.case.id)
                           if request.args.get("duplicates") or failed == "duplicates" else None,
                           merges=service.case_merges(actor=actor, case_id=case_id).items,
                           graph_scripts=[f for f in GRAPH_SCRIPTS if _static_exists(f)]
                           if _static_exists(GRAPH_SCRIPTS[0]) else [],
                           chart_script=CHART_SCRIPT if _static_exists(CHART_SCRIPT) else None
                           ), status


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


# --- Entity resolution: possible duplicates, merge, undo a merge --------------------------

from taskforce.errors import Forbidden, NotFound  # this block's own imports
from taskforce.investigations.service import READ, WRITE, get_case_or_404

# Why a pair is suggested, by the kind of identifier they share (Suggestion.detail).
SHARED_IDENTIFIER = {"person": "the same name and date of birth", "address": "the same address",
                     "phone": "the same phone number", "email": "the same email address",
                     "name": "the same name", "vehicle_plate": "the same licence plate",
                     "vin": "the same VIN", "url": "the same web address"}


def _duplicates(actor, case_id: int) -> list[dict]:
    """Suggested pairs as this reader sees both entities (schemas.graph_nodes redacts),
    with the numbers of the readable cases each one is in."""
    found = service.suggest_duplicates(actor=actor, case_id=case_id)
    nodes = schemas.graph_nodes({i for s in found.suggestions for i in s.entities},
                                actor=actor, case_ids=found.case_ids)
    numbers = service.case_numbers(actor=actor,
                                   case_ids={c for n in nodes.values() for c in n["cases"]})
    rows = []
    for s in found.suggestions:
        if not all(i in nodes for i in s.entities):
            continue
        pair = [nodes[i] for i in s.entities]
        # the entity this case holds first: kept by default
        pair.sort(key=lambda n: case_id not in n["cases"])
        why = (f"Shares {SHARED_IDENTIFIER.get(s.detail, 'an identifier (' + s.detail + ')')}"
               if s.reason == "same_identifier"
               else "Similar name, same date of birth")
        rows.append({"entities": [{**n, "case_numbers": [numbers.get(c, "?") for c in n["cases"]]}
                                  for n in pair],
                     "reason": s.reason, "why": why, "score": s.score,
                     "pair": ",".join(str(n["id"]) for n in pair)})
    return rows


def _resolve(case_id: int, section: str, done: str, call, **kwargs):
    """Like _act, but a refusal the service raises for this form (403 for an entity in a
    case you may only read, 404 for a merge not shared with you) also shows the page
    again with the message beside the form. The case is looked up first, so someone
    outside it gets the one 404 page, as on every case route."""
    try:
        call(actor=current_actor(), case_id=case_id, **kwargs)
    except (Invalid, Conflict, Forbidden, NotFound) as err:
        return _render(case_id, failed=section, error=err, status=err.status)
    flash(done, "success")
    again = {"duplicates": 1} if section == "duplicates" else {}  # the suggestions left
    return redirect(url_for(".network", case_id=case_id, _anchor=section, **again))


def _merge(*, actor, case_id: int, pair: str, keep_id: str, reason: str):
    get_case_or_404(actor=actor, case_id=case_id, action=WRITE, attempt="entity.merge")
    # the form names the pair and which one stays; the other one is absorbed
    ids = [p.strip() for p in pair.split(",") if p.strip()]
    absorb_id = next((i for i in ids if i != keep_id), "") if keep_id in ids else ""
    if not reason:  # a merge changes what every case holding either entity sees
        raise Invalid("Say why these are the same before merging them.",
                      fields={"reason": ["Required."]})
    service.merge_entities(actor=actor, case_id=case_id, keep_id=keep_id or None,
                           absorb_id=absorb_id or None, reason=reason)


def _undo(*, actor, case_id: int, merge_id: str):
    get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="entity.unmerge")
    service.unmerge_entities(actor=actor, merge_id=merge_id)


@bp.post("/cases/<int:case_id>/network/merges")
@signed_in
def merge_entities(case_id: int):
    return _resolve(case_id, "duplicates", "Merged: the kept entity now carries both "
                    "records. You can undo this below.", _merge, pair=_form("pair"),
                    keep_id=_form("keep_id"), reason=_form("reason"))


@bp.post("/cases/<int:case_id>/network/merges/undo")
@signed_in
def undo_merge(case_id: int):
    return _resolve(case_id, "merges", "Merge undone: both entities are back as they were.",
                    _undo, merge_id=_form("merge_id"))


# --- Imports: the case's import page, one import's live status, column mappings ----------

from taskforce.errors import DomainError  # this block's own imports
from taskforce.graph import imports
from taskforce.graph.models import IMPORT_KINDS, IMPORT_STATUSES


@bp.url_value_preprocessor
def _raise_import_limit(endpoint, values) -> None:
    """Before the CSRF check parses the form: only the import upload may be large."""
    if endpoint == "graph.start_import" and request.mimetype == "multipart/form-data":
        request.max_content_length = imports._max_bytes()


def _import_labels() -> dict:
    return {"import_kinds": IMPORT_KINDS, "import_statuses": IMPORT_STATUSES,
            "mappable_kinds": imports.MAPPABLE_KINDS, "link_types": LINK_TYPES,
            "cell_parties": imports.CELL_PARTIES}


def _imports_page(case_id: int, *, error=None, status: int = 200):
    page = imports.list_imports(actor=current_actor(), case_id=case_id)
    return render_template("graph/imports.html", page=page, case=page.case, error=error,
                           form=request.form if error else {}, labels=_import_labels(),
                           max_bytes=imports._max_bytes()), status


@bp.get("/cases/<int:case_id>/imports")
@signed_in
def imports_page(case_id: int):
    return _imports_page(case_id)


@bp.post("/cases/<int:case_id>/imports")
@signed_in
def start_import(case_id: int):
    upload = request.files.get("file")
    try:
        if upload is None or not upload.filename:
            raise Invalid("Choose a CSV file to import.", fields={"file": ["Required."]})
        started = imports.start_import(
            actor=current_actor(), case_id=case_id, stream=upload.stream,
            filename=upload.filename, kind=_form("kind"),
            mapping_id=_form("mapping_id") or None, account=_form("account") or None,
            cell_sites=_form("cell_sites") or None)
    except (Invalid, Conflict) as err:
        return _imports_page(case_id, error=err, status=err.status)
    except DomainError as err:
        if err.status != 415:
            raise
        return _imports_page(case_id, error=err, status=415)
    finally:
        if upload is not None:
            upload.close()
    flash(started.message, "success" if started.created else "info")
    return redirect(url_for(".import_run", run_id=started.run.id))


@bp.get("/imports/<int:run_id>")
@signed_in
def import_run(run_id: int):
    imp = imports.get_import(actor=current_actor(), run_id=run_id)
    return render_template("graph/import_run.html", run=imp, status=imports.status_of(imp),
                           labels=_import_labels(), repeat=bool(request.args.get("repeat")))


@bp.get("/import-mappings")
@signed_in
def mappings_page():
    return _mappings_page()


def _mappings_page(*, error=None, status: int = 200, editing=None):
    actor = current_actor()
    mappings = imports.list_mappings(actor=actor)
    return render_template("graph/mappings.html", mappings=mappings, error=error,
                           form=request.form if error else {}, labels=_import_labels(),
                           editing=editing, user_id=actor.user_id), status


@bp.post("/import-mappings")
@signed_in
def save_mapping():
    try:
        mapping = imports.save_mapping(
            actor=current_actor(), mapping_id=_form("mapping_id") or None, name=_form("name"),
            source_column=_form("source_column"), source_kind=_form("source_kind"),
            target_column=_form("target_column"), target_kind=_form("target_kind"),
            link_type=_form("link_type"), date_column=_form("date_column") or None,
            amount_column=_form("amount_column") or None, shared=bool(_form("shared")))
    except Invalid as err:
        return _mappings_page(error=err, status=err.status)
    flash(f"Mapping \u201c{mapping.name}\u201d saved.", "success")
    return redirect(url_for(".mappings_page"))


@bp.post("/import-mappings/<int:mapping_id>/delete")
@signed_in
def delete_mapping(mapping_id: int):
    imports.delete_mapping(actor=current_actor(), mapping_id=mapping_id)
    flash("Mapping deleted.", "success")
    return redirect(url_for(".mappings_page"))
