"""JSON API for entities and links. Thin: parse, call the service, serialise
through schemas.py (which redacts survivors for this actor and case).

Every route is `signed_in`; which case (and so which entity) the caller may
reach is decided by the service's one access check: a case or entity not
shared with the caller answers 404, like one that does not exist.
"""
from __future__ import annotations

from apiflask import APIBlueprint

from taskforce.accounts.permissions import current_actor, signed_in
from taskforce.graph import policy, questions, schemas, service
from taskforce.graph.schemas import (
    EntityDetailOut,
    EntityIn,
    EntityOut,
    EntityQuery,
    LinkIn,
    LinkOut,
    LinkQuery,
)
from taskforce.investigations.service import get_case_or_404

bp = APIBlueprint("graph_api", __name__, url_prefix="/api/v1", tag="Entities and links")

NOT_FOUND = "No such case, or it is not shared with you"
INVALID = ("Bad input, with the reason per field (an identifier that cannot be normalized "
           "names `identifiers.<i>.kind` or `identifiers.<i>.value`); nothing is written")


@bp.get("/cases/<int:case_id>/entities")
@signed_in
@bp.input(EntityQuery, location="query")
@bp.output(EntityOut(many=True))
@bp.doc(summary="A case's entities", description="Each as this case entered it (label, "
        "details, identifiers), never as another case did. Survivors, and the phones and "
        "accounts a survivor uses or owns, appear by pseudonym, without names, date of "
        "birth or identifiers, unless you are the case lead or a victim specialist on the "
        "case.", responses={404: NOT_FOUND})
def list_entities(case_id: int, query_data):
    actor = current_actor()
    result = service.list_entities(actor=actor, case_id=case_id, **query_data)
    return schemas.case_entities_out(result.items, actor=actor, case=result.case)


@bp.post("/cases/<int:case_id>/entities")
@signed_in
@bp.input(EntityIn)
@bp.output(EntityOut, status_code=201)
@bp.doc(summary="Add an entity to a case", description="Identifiers are normalized; when one "
        "already exists, its entity is attached to this case instead of a new one being "
        "made (the answer is that entity).", responses={404: NOT_FOUND, 422: INVALID})
def add_entity(case_id: int, json_data):
    actor = current_actor()
    entity = service.add_entity(actor=actor, case_id=case_id, **json_data)
    case = get_case_or_404(actor=actor, case_id=case_id)
    role = next((ce.role for ce in entity.case_links if ce.case_id == case.id), None)
    return schemas.entity_out(entity, actor=actor, case=case, role=role), 201


@bp.get("/entities/<int:entity_id>")
@signed_in
@bp.output(EntityDetailOut)
@bp.doc(summary="An entity, with the cases of it you may read",
        responses={404: "No such entity, or it is in no case shared with you"})
def get_entity(entity_id: int):
    actor = current_actor()
    view = service.get_entity(actor=actor, entity_id=entity_id)
    return schemas.entity_out(view.entity, actor=actor, case=None, cases=view.cases)


@bp.get("/cases/<int:case_id>/links")
@signed_in
@bp.input(LinkQuery, location="query")
@bp.output(LinkOut(many=True))
@bp.doc(summary="A case's links", responses={404: NOT_FOUND})
def list_links(case_id: int, query_data):
    actor = current_actor()
    result = service.list_links(actor=actor, case_id=case_id, **query_data)
    return schemas.links_out(result.items, actor=actor, case=result.case)


@bp.post("/cases/<int:case_id>/links")
@signed_in
@bp.input(LinkIn)
@bp.output(LinkOut, status_code=201)
@bp.doc(summary="Link two entities of a case", description="The same link from the same "
        "source (provenance) is merged into the existing one, never duplicated.",
        responses={404: NOT_FOUND, 422: INVALID})
def add_link(case_id: int, json_data):
    actor = current_actor()
    link = service.add_link(actor=actor, case_id=case_id, **json_data)
    case = get_case_or_404(actor=actor, case_id=case_id)
    return schemas.link_out(link, actor=actor, case=case), 201


# Graph questions (Neo4j) ---------------------------------------------------------------------
# Limited to the cases you may read (or the one named by case_id), survivors pseudonymised,
# audited; 422 names a bad parameter, 503 when the graph engine is down.

GRAPH_422 = "A bad parameter, named in `fields`"
GRAPH_503 = "The graph engine is not reachable right now"
GRAPH_RESPONSES = {404: NOT_FOUND, 422: GRAPH_422, 503: GRAPH_503}


@bp.get("/graph/cases/<int:case_id>/network")
@signed_in
@bp.input(schemas.NetworkQuery, location="query")
@bp.output(schemas.SubgraphOut)
@bp.doc(tags=["Graph"], summary="A case's whole network, from the graph engine",
        responses=GRAPH_RESPONSES)
def graph_network(case_id: int, query_data):
    return questions.graph_network(actor=current_actor(), case_id=case_id, **query_data)


@bp.get("/graph/expand")
@signed_in
@bp.input(schemas.ExpandQuery, location="query")
@bp.output(schemas.SubgraphOut)
@bp.doc(tags=["Graph"], summary="Expand entities N hops, with filters",
        description="Kinds reached, link types followed, date window (links active in it) "
        "and minimum confidence apply to every step; direction is ignored.",
        responses=GRAPH_RESPONSES)
def graph_expand(query_data):
    data = dict(query_data)
    return questions.graph_expand(actor=current_actor(), entity_ids=data.pop("entity_id"), **data)


@bp.get("/graph/shortest-path")
@signed_in
@bp.input(schemas.PathQuery, location="query")
@bp.output(schemas.ShortestPathOut)
@bp.doc(tags=["Graph"], summary="One shortest path between two entities",
        responses=GRAPH_RESPONSES)
def graph_shortest_path(query_data):
    return questions.graph_shortest_path(actor=current_actor(), **query_data)


@bp.get("/graph/all-shortest-paths")
@signed_in
@bp.input(schemas.PathsQuery, location="query")
@bp.output(schemas.PathsOut)
@bp.doc(tags=["Graph"], summary="Every shortest path between two entities",
        responses=GRAPH_RESPONSES)
def graph_all_shortest_paths(query_data):
    return questions.graph_all_shortest_paths(actor=current_actor(), **query_data)


@bp.get("/graph/time-paths")
@signed_in
@bp.input(schemas.TimePathsQuery, location="query")
@bp.output(schemas.PathsOut)
@bp.doc(tags=["Graph"], summary="Time-respecting paths",
        description="Chains of links followed in their direction whose first-seen dates go "
        "forward (money moving from buyers to a controller, a chain of calls).",
        responses=GRAPH_RESPONSES)
def graph_time_paths(query_data):
    return questions.graph_time_paths(actor=current_actor(), **query_data)


@bp.get("/graph/shared")
@signed_in
@bp.input(schemas.SharedQuery, location="query")
@bp.output(schemas.SharedOut)
@bp.doc(tags=["Graph"], summary="Shared connections of a set of entities",
        responses=GRAPH_RESPONSES)
def graph_shared(query_data):
    data = dict(query_data)
    return questions.graph_shared(actor=current_actor(), entity_ids=data.pop("entity_id"), **data)


@bp.get("/graph/cases/<int:case_id>/key-players")
@signed_in
@bp.input(schemas.KeyPlayersQuery, location="query")
@bp.output(schemas.KeyPlayersOut)
@bp.doc(tags=["Graph"], summary="Key players of a case network",
        description="Degree, betweenness and PageRank computed with python-igraph on the "
        "case subgraph; ranked by betweenness.", responses=GRAPH_RESPONSES)
def graph_key_players(case_id: int, query_data):
    return questions.graph_key_players(actor=current_actor(), case_id=case_id, **query_data)


@bp.get("/graph/cases/<int:case_id>/communities")
@signed_in
@bp.input(schemas.CommunitiesQuery, location="query")
@bp.output(schemas.CommunitiesOut)
@bp.doc(tags=["Graph"], summary="Communities of a case network (Leiden or Louvain, igraph)",
        responses=GRAPH_RESPONSES)
def graph_communities(case_id: int, query_data):
    return questions.graph_communities(actor=current_actor(), case_id=case_id, **query_data)


# Entity resolution ---------------------------------------------------------------------------

@bp.get("/graph/cases/<int:case_id>/duplicates")
@signed_in
@bp.output(schemas.DuplicatesOut)
@bp.doc(tags=["Graph"], summary="Suggested duplicates of this case's entities",
        description="Against every entity you may see: a shared normalized identifier, or "
        "people with the same date of birth and similar names (rapidfuzz).",
        responses={404: NOT_FOUND})
def graph_duplicates(case_id: int):
    actor = current_actor()
    found = service.suggest_duplicates(actor=actor, case_id=case_id)
    nodes = schemas.graph_nodes({i for s in found.suggestions for i in s.entities},
                                actor=actor, case_ids=found.case_ids)
    return {"suggestions": [{"entities": [nodes[i] for i in s.entities], "reason": s.reason,
                             "score": s.score} for s in found.suggestions
                            if all(i in nodes for i in s.entities)]}


def _merge_out(merge) -> dict:
    actor = current_actor()
    nodes = schemas.graph_nodes([merge.kept_id, merge.absorbed_id], actor=actor,
                                case_ids=policy.readable_case_ids(actor))
    return {"id": merge.id, "kept_id": merge.kept_id, "absorbed_id": merge.absorbed_id,
            "undone": merge.undone_at is not None,
            "entities": [nodes[i] for i in (merge.kept_id, merge.absorbed_id) if i in nodes]}


@bp.post("/graph/cases/<int:case_id>/merges")
@signed_in
@bp.input(schemas.MergeIn)
@bp.output(schemas.MergeOut, status_code=201)
@bp.doc(tags=["Graph"], summary="Merge two entities found to be the same",
        description="Identifiers, case memberships and links move to the kept entity; "
        "audited; undo with /graph/merges/<id>/undo.",
        responses={403: "An entity is also in a case you cannot contribute to",
                   404: NOT_FOUND, 422: INVALID})
def graph_merge(case_id: int, json_data):
    merge = service.merge_entities(actor=current_actor(), case_id=case_id, **json_data)
    return _merge_out(merge), 201


@bp.post("/graph/merges/<int:merge_id>/undo")
@signed_in
@bp.output(schemas.MergeOut)
@bp.doc(tags=["Graph"], summary="Undo a merge: both entities restored exactly",
        responses={404: "No such merge, or not in a case shared with you",
                   409: "Already undone, or the kept entity was merged since"})
def graph_unmerge(merge_id: int):
    return _merge_out(service.unmerge_entities(actor=current_actor(), merge_id=merge_id))


# Exports -------------------------------------------------------------------------------------

@bp.get("/graph/cases/<int:case_id>/export/<string:fmt>")
@signed_in
@bp.doc(tags=["Graph"], summary="Export a case network",
        description="fmt: ftm.jsonl (FollowTheMoney, as OCCRP Aleph imports), nodes.csv and "
        "links.csv (i2 Analyst's Notebook), graph.graphml. What you see of the case: survivors "
        "and what they use appear by pseudonym unless you are the case lead or a victim "
        "specialist on it. Audited.",
        responses={200: "The file", 404: NOT_FOUND, 422: "Unknown format"})
def graph_export(case_id: int, fmt: str):
    from flask import Response

    out = service.export_case(actor=current_actor(), case_id=case_id, fmt=fmt)
    return Response(out.body, mimetype=out.mimetype, headers={
        "Content-Disposition": f'attachment; filename="{out.filename}"',
        "Cache-Control": "no-store"})


# --- Imports of call detail records, bank records and generic CSV (imports.py) ----------

from flask import request, url_for  # this block's own imports
from werkzeug.exceptions import UnsupportedMediaType

from taskforce.errors import Invalid
from taskforce.graph import imports
from taskforce.graph.schemas import (
    ImportOut,
    ImportQuery,
    MappingIn,
    MappingOut,
)
from taskforce.investigations.policy import WRITE

IMPORT_TYPES = ("application/octet-stream", "text/csv", "text/plain")
IMPORT_NOT_FOUND = "No such case or import, or it is not shared with you"


def import_out(imp, *, created: bool | None = None, message: str | None = None) -> dict:
    out = imports.status_of(imp)
    out["created"] = True if created is None else created
    out["message"] = message or ""
    out["status_url"] = url_for("graph_api.get_import", run_id=imp.id)
    out["page_url"] = url_for("graph.import_run", run_id=imp.id)
    return out


@bp.url_value_preprocessor
def _raise_import_limit(endpoint, values) -> None:
    """Before the CSRF check reads anything: only the import upload may be large."""
    if endpoint == "graph_api.start_import" and request.mimetype in IMPORT_TYPES:
        request.max_content_length = imports._max_bytes()


@bp.post("/cases/<int:case_id>/imports")
@signed_in
@bp.input(ImportQuery, location="query")
@bp.output(ImportOut, status_code=202)
@bp.doc(tags=["Imports"], summary="Import a CSV of call records, bank records or mapped rows",
        description="Send the CSV itself as the body (Content-Type text/csv or "
        "application/octet-stream); `kind` cdr, bank or generic in the query, with "
        "`mapping_id` for generic and `account` (the statement's own account) for bank "
        "records without an account column. The file is kept as an evidence item (hashed, "
        "with custody) and imported by a background job: poll `status_url`. The same file "
        "(same SHA-256) again in the same case makes nothing new: 200 with created=false. "
        "415 for a body that is not CSV text, 422 for not UTF-8, missing columns or bad "
        "options; nothing is written then.",
        responses={200: "Imported before: nothing new", 404: IMPORT_NOT_FOUND,
                   415: "Not CSV", 422: "Bad file or options"})
def start_import(case_id: int, query_data):
    actor = current_actor()
    get_case_or_404(actor=actor, case_id=case_id, action=WRITE, attempt="import.start")
    if request.mimetype not in IMPORT_TYPES:
        raise UnsupportedMediaType(
            f"Send the CSV itself as the request body with Content-Type text/csv "
            f"(this was {request.mimetype or 'no content type'}); forms upload from the "
            "case's import page.")
    if request.content_length == 0:
        raise Invalid("The upload is empty.", fields={"file": ["Empty."]})
    started = imports.start_import(actor=actor, case_id=case_id, stream=request.stream,
                                   **query_data)
    body = import_out(started.run, created=started.created, message=started.message)
    return body, 202 if started.created else 200


@bp.get("/cases/<int:case_id>/imports")
@signed_in
@bp.output(ImportOut(many=True))
@bp.doc(tags=["Imports"], summary="A case's imports, newest first",
        responses={404: IMPORT_NOT_FOUND})
def list_imports(case_id: int):
    result = imports.list_imports(actor=current_actor(), case_id=case_id)
    return [import_out(run) for run in result.runs]


@bp.get("/imports/<int:run_id>")
@signed_in
@bp.output(ImportOut)
@bp.doc(tags=["Imports"], summary="One import and where it stands (the page polls this)",
        responses={404: IMPORT_NOT_FOUND})
def get_import(run_id: int):
    return import_out(imports.get_import(actor=current_actor(), run_id=run_id))


@bp.get("/import-mappings")
@signed_in
@bp.output(MappingOut(many=True))
@bp.doc(tags=["Imports"], summary="Column mappings you may use (yours and your agency's)")
def list_mappings():
    return [schemas.mapping_out(m) for m in imports.list_mappings(actor=current_actor())]


@bp.post("/import-mappings")
@signed_in
@bp.input(MappingIn)
@bp.output(MappingOut, status_code=201)
@bp.doc(tags=["Imports"], summary="Remember a column mapping for generic CSV imports",
        responses={422: "Bad mapping"})
def save_mapping(json_data):
    mapping = imports.save_mapping(actor=current_actor(), **json_data)
    return schemas.mapping_out(mapping), 201


@bp.delete("/import-mappings/<int:mapping_id>")
@signed_in
@bp.output({}, status_code=204)
@bp.doc(tags=["Imports"], summary="Delete one of your column mappings",
        responses={403: "Not yours", 404: "No such mapping, or not shared with you"})
def delete_mapping(mapping_id: int):
    imports.delete_mapping(actor=current_actor(), mapping_id=mapping_id)
    return "", 204


