"""JSON API for entities and links. Thin: parse, call the service, serialise
through schemas.py (which redacts survivors for this actor and case).

Every route is `signed_in`; which case (and so which entity) the caller may
reach is decided by the service's one access check: a case or entity not
shared with the caller answers 404, like one that does not exist.
"""
from __future__ import annotations

from apiflask import APIBlueprint

from taskforce.accounts.permissions import current_actor, signed_in
from taskforce.graph import schemas, service
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
@bp.doc(summary="A case's entities", description="Survivors appear by pseudonym, without "
        "names, date of birth or identifiers, unless you are the case lead or a victim "
        "specialist on the case.", responses={404: NOT_FOUND})
def list_entities(case_id: int, query_data):
    actor = current_actor()
    result = service.list_entities(actor=actor, case_id=case_id, **query_data)
    return [schemas.case_entity_out(ce, actor=actor, case=result.case) for ce in result.items]


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
    return [schemas.link_out(lk, actor=actor, case=result.case) for lk in result.items]


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
