"""What the entity and link API takes, and the serializers that redact.

In: APIFlask schemas check shapes and types only. What is required, which
vocabularies apply, and identifier normalization are the service's (it is
also called from pages and tasks), and it checks access *before* it validates,
so someone outside a case learns nothing from an error message.

Out: every entity and link leaves the application through `entity_out`,
`link_out` or `network_out` here, with the actor and the case. A survivor's
label, names, date of birth and identifiers are replaced by the pseudonym
unless `policy.reveals()` says this actor may see them (DESIGN.md invariant 3).
Pages, the API, the timeline source and exports all call these; none builds
its own view of an entity.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from apiflask import Schema
from apiflask.fields import Boolean, DateTime, Dict, Float, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range

from taskforce.accounts.permissions import Actor
from taskforce.graph import policy
from taskforce.graph.models import (
    ENTITY_KINDS,
    LINK_TYPES,
    PERSON_ROLES,
    PROVENANCE_KINDS,
    CaseEntity,
    Entity,
    Link,
)
from taskforce.investigations.models import Case

LABEL_MAX = 200
REDACTED_PROPS: dict[str, Any] = {}


# Serializers (the one place an entity is turned into something shown) ---------------
# What is shown of an entity comes from the cases given as context (those the reader
# may read), never from the shared Entity row: each case's label, details, role and
# identifiers are its own (CaseEntity). A survivor, or an entity shielded by a
# survivor in that case (policy.shields), shows a pseudonym unless policy.reveals_in.

def _cases_list(cases: Case | Iterable[Case] | None) -> list[Case]:
    if cases is None:
        return []
    if isinstance(cases, Case):
        return [cases]
    return list(cases)


def _shield_of(entity: Entity, shields: policy.Shields | None) -> Mapping[int, str]:
    if shields is None:
        shields = policy.shields([entity.id])
    return shields.get(entity.id) or {}


@dataclass
class _Seen:
    """What one reader sees of one entity in some cases."""

    label: str
    revealed: bool
    shielded: bool
    minor: bool
    role: str | None
    props: dict[str, Any]
    identifiers: list[Any]
    memberships: list[tuple[Case, CaseEntity, bool]]  # (case, its record, revealed there)
    hidden_label: str  # what is shown where the identity is withheld


class _SurvivorAnswers(dict):
    """may_see_survivor per case, asked once per case for a whole answer."""

    def __init__(self, actor: Actor, cases: Iterable[Case]):
        super().__init__()
        self.actor, self.cases = actor, {c.id: c for c in cases}

    def __missing__(self, case_id: int) -> bool:
        self[case_id] = policy.may_see_survivor(self.actor, self.cases[case_id])
        return self[case_id]

    def __contains__(self, case_id: object) -> bool:
        return case_id in self.cases


def _seen(entity: Entity, *, actor: Actor, cases: Case | Iterable[Case] | None,
          shields: policy.Shields | None = None,
          survivor_ok: Mapping[int, bool] | None = None) -> _Seen:
    shield = _shield_of(entity, shields)
    pairs = [(c, ce) for c in _cases_list(cases) if (ce := entity.in_case(c.id)) is not None]
    marked = [(c, ce, policy.reveals_in(actor, entity, c, shield, survivor_ok=survivor_ok))
              for c, ce in pairs]
    shown = [(c, ce) for c, ce, ok in marked if ok]
    today = date.today()
    minor = any(ce.minor_on(today) for _, ce in pairs)
    shielded = not entity.is_survivor and any(c.id in shield for c, _ in pairs)
    if entity.is_survivor:
        hidden = entity.pseudonym or "Survivor"
    elif shielded:
        hidden = policy.shielded_label(
            entity, next(shield[c.id] for c, _ in pairs if c.id in shield))
    else:  # in none of these cases: nothing of it may be shown
        hidden = ENTITY_KINDS.get(entity.kind, entity.kind)
    if shown:
        first = shown[0][1]
        keys = {tuple(k) for _, ce in shown for k in (ce.identifier_keys or [])}
        return _Seen(
            label=first.label or ENTITY_KINDS.get(entity.kind, entity.kind), revealed=True,
            shielded=shielded, minor=minor, role=first.role, props=dict(first.props or {}),
            identifiers=[i for i in entity.identifiers if (i.kind, i.value) in keys],
            memberships=marked, hidden_label=hidden)
    role = pairs[0][1].role if pairs else None
    return _Seen(label=hidden, revealed=False, shielded=shielded, minor=minor, role=role,
                 props=dict(REDACTED_PROPS), identifiers=[], memberships=marked,
                 hidden_label=hidden)


def entity_label(entity: Entity, *, actor: Actor, case: Case | Iterable[Case] | None,
                 shields: policy.Shields | None = None) -> str:
    """The name to show for an entity: a survivor's pseudonym unless the actor may see more."""
    return _seen(entity, actor=actor, cases=case, shields=shields).label


def entity_ref(entity: Entity, *, actor: Actor, case: Case | Iterable[Case] | None,
               shields: policy.Shields | None = None) -> dict:
    """The few fields a link or a timeline line shows of an entity."""
    seen = _seen(entity, actor=actor, cases=case, shields=shields)
    return {"id": entity.id, "kind": entity.kind, "label": seen.label,
            "pseudonym": entity.pseudonym, "survivor": entity.is_survivor,
            "minor": seen.minor, "redacted": not seen.revealed}


def entity_out(entity: Entity, *, actor: Actor, case: Case | None,
               cases: Iterable[Case] | None = None, role: str | None = None,
               shields: policy.Shields | None = None) -> dict:
    """An entity as this actor may see it, in one case (`case`) or, with `cases`,
    across the cases of it the actor may read (then each with its role, label and
    details as that case entered them, redacted per case)."""
    context: list[Case] = list(cases) if cases is not None else ([case] if case else [])
    seen = _seen(entity, actor=actor, cases=context, shields=shields)
    out = {
        "id": entity.id,
        "kind": entity.kind,
        "label": seen.label,
        "pseudonym": entity.pseudonym,
        "survivor": entity.is_survivor,
        "shielded": seen.shielded,
        "minor": seen.minor,
        "redacted": not seen.revealed,
        "props": seen.props,
        "identifiers": [{"kind": i.kind, "value": i.value, "display": i.display or i.value}
                        for i in seen.identifiers],
        "created_at": entity.created_at,
    }
    if case is not None and cases is None:
        out["case_id"] = case.id
        out["role"] = role if role is not None else seen.role
    if cases is not None:
        out["cases"] = [{"id": c.id, "number": c.number, "title": c.title, "role": ce.role,
                         "label": (ce.label or seen.label) if ok else seen.hidden_label,
                         "props": dict(ce.props or {}) if ok else dict(REDACTED_PROPS)}
                        for c, ce, ok in seen.memberships]
    return out


def case_entity_out(ce: CaseEntity, *, actor: Actor, case: Case,
                    shields: policy.Shields | None = None) -> dict:
    return entity_out(ce.entity, actor=actor, case=case, role=ce.role, shields=shields)


def case_entities_out(items: Iterable[CaseEntity], *, actor: Actor, case: Case) -> list[dict]:
    items = list(items)
    shields = policy.shields(ce.entity_id for ce in items)
    return [case_entity_out(ce, actor=actor, case=case, shields=shields) for ce in items]


def graph_nodes(entity_ids: Iterable[int], *, actor: Actor,
                case_ids: Iterable[int]) -> dict[int, dict]:
    """The nodes of a graph answer, as this reader sees them: each entity in the
    readable cases (`case_ids`) that hold it, labelled by the first of those (in id
    order) that reveals it, else by pseudonym. Entities in none of them (or merged
    away) are left out. Returns entity id -> node."""
    from sqlalchemy import select

    from taskforce.extensions import db

    ids = sorted({int(i) for i in entity_ids})
    readable = {int(c) for c in case_ids}
    if not ids or not readable:
        return {}
    entities = []
    for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
        entities += db.session.scalars(select(Entity).where(
            Entity.id.in_(chunk), Entity.merged_into_id.is_(None))).all()
    wanted = sorted({c for e in entities for c in e.case_ids if c in readable})
    cases = {c.id: c for c in db.session.scalars(select(Case).where(Case.id.in_(wanted)))} \
        if wanted else {}
    shields = policy.shields(e.id for e in entities)
    answers = _SurvivorAnswers(actor, cases.values())
    out: dict[int, dict] = {}
    for entity in entities:
        mine = [cases[c] for c in entity.case_ids if c in cases]
        if not mine:
            continue
        seen = _seen(entity, actor=actor, cases=mine, shields=shields, survivor_ok=answers)
        out[entity.id] = {"id": entity.id, "kind": entity.kind, "label": seen.label,
                          "survivor": entity.is_survivor, "minor": seen.minor,
                          "redacted": not seen.revealed, "role": seen.role,
                          "cases": [c.id for c in mine]}
    return out


def _amount(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def link_out(link: Link, *, actor: Actor, case: Case,
             shields: policy.Shields | None = None) -> dict:
    if shields is None:
        shields = policy.shields([link.source_id, link.target_id])
    return {
        "id": link.id,
        "case_id": link.case_id,
        "type": link.type,
        "source": entity_ref(link.source, actor=actor, case=case, shields=shields),
        "target": entity_ref(link.target, actor=actor, case=case, shields=shields),
        "provenance": {"kind": link.provenance_kind, "ref": link.provenance_ref or None},
        "entered_by": link.entered_by.username if link.entered_by is not None else None,
        "confidence": link.confidence,
        "first_seen": link.first_seen,
        "last_seen": link.last_seen,
        "count": link.count,
        "amount": _amount(link.amount),
        "created_at": link.created_at,
        "updated_at": link.updated_at,
    }


def links_out(items: Iterable[Link], *, actor: Actor, case: Case) -> list[dict]:
    items = list(items)
    shields = policy.shields({i for lk in items for i in (lk.source_id, lk.target_id)})
    return [link_out(lk, actor=actor, case=case, shields=shields) for lk in items]


def network_out(case: Case, entities: Iterable[CaseEntity], links: Iterable[Link], *,
                actor: Actor) -> dict:
    entities, links = list(entities), list(links)
    shields = policy.shields({ce.entity_id for ce in entities}
                             | {i for lk in links for i in (lk.source_id, lk.target_id)})
    return {"case_id": case.id,
            "entities": [case_entity_out(ce, actor=actor, case=case, shields=shields)
                         for ce in entities],
            "links": [link_out(lk, actor=actor, case=case, shields=shields) for lk in links]}


# In ------------------------------------------------------------------------------------
# Nothing is `required` here: the service checks access first, then says what is missing.

class IdentifierIn(Schema):
    kind = String(load_default=None, allow_none=True, metadata={"description": "phone, email, bank_account, crypto_wallet, "
                                           "online_account, ad, url, vehicle_plate, vin, "
                                           "address or person (name|DOB)"})
    value = String(load_default=None, allow_none=True, validate=Length(max=1000),
                   metadata={"description": "as written; a second part goes in the same "
                                            "string: 'TX:ABC1234', 'routing:account', "
                                            "'btc:<address>', 'John Smith|1990-04-12'"})


class EntityQuery(Schema):
    kind = String(validate=OneOf(list(ENTITY_KINDS)))


class EntityIn(Schema):
    kind = String(load_default=None, allow_none=True, metadata={"description": "required: " + ", ".join(ENTITY_KINDS)})
    label = String(load_default="", validate=Length(max=LABEL_MAX),
                   metadata={"description": "how to call it; defaults to the first name or "
                                            "identifier"})
    identifiers = List(Nested(IdentifierIn), load_default=list, validate=Length(max=50),
                       metadata={"description": "normalized before storing; one that already "
                                                "exists attaches its entity to the case"})
    props = Dict(load_default=dict, metadata={
        "description": "details by kind: person {names, aliases, dob, sex}; location "
                       "{address, lat, lon, location_kind}; vehicle {make, model, color, "
                       "year}; online_account/ad {platform, handle, title, posted_on}; "
                       "any kind {notes}"})
    case_role = String(load_default=None, allow_none=True,
                       metadata={"description": "a person's role in this case: "
                                                + ", ".join(PERSON_ROLES)})


class LinkQuery(Schema):
    type = String(validate=OneOf(list(LINK_TYPES)))


class LinkIn(Schema):
    source_id = Integer(load_default=None, allow_none=True,
                        metadata={"description": "required: an entity of this case"})
    target_id = Integer(load_default=None, allow_none=True,
                        metadata={"description": "required: an entity of this case"})
    type = String(load_default=None, allow_none=True,
                  metadata={"description": "required: " + ", ".join(LINK_TYPES)})
    provenance_kind = String(load_default="manual", metadata={
        "description": "where it came from: " + ", ".join(PROVENANCE_KINDS)})
    provenance_ref = String(load_default=None, allow_none=True, validate=Length(max=64),
                            metadata={"description": "the evidence item, import or note id; "
                                                     "empty when entered by hand"})
    first_seen = String(load_default=None, allow_none=True,
                        metadata={"description": "date or date-time (ISO 8601)"})
    last_seen = String(load_default=None, allow_none=True,
                       metadata={"description": "date or date-time (ISO 8601)"})
    confidence = Float(load_default=1.0, validate=Range(min=0, max=1))
    count = Integer(load_default=1, validate=Range(min=1))
    amount = Float(load_default=None, allow_none=True, validate=Range(min=0),
                   metadata={"description": "total amount (PAID), in dollars"})


# Graph questions (api.py /api/v1/graph/...) -------------------------------------------
# Lists come as repeated parameters or comma-separated text; the ranges are checked by
# queries.py (one place), which the service turns into a 422 naming the parameter.

_IDS = "entity ids (repeat the parameter, or separate with commas)"
_KINDS = "entity kinds: " + ", ".join(ENTITY_KINDS)
_TYPES = "link types: " + ", ".join(LINK_TYPES)
_SCOPE = "only this case (else every case you may read)"


class ExpandQuery(Schema):
    entity_id = List(String(), load_default=None, metadata={"description": "required: " + _IDS})
    hops = Integer(load_default=1, metadata={"description": "1-3"})
    kinds = List(String(), load_default=None, metadata={"description": _KINDS})
    link_types = List(String(), load_default=None, metadata={"description": _TYPES})
    since = String(load_default=None, metadata={"description": "links seen on or after (ISO 8601)"})
    until = String(load_default=None, metadata={"description": "links seen on or before"})
    min_confidence = Float(load_default=None, metadata={"description": "0-1"})
    limit = Integer(load_default=500, metadata={"description": "nodes, 1-5000"})
    case_id = Integer(load_default=None, metadata={"description": _SCOPE})


class PathQuery(Schema):
    source = Integer(load_default=None, metadata={"description": "required: entity id"})
    target = Integer(load_default=None, metadata={"description": "required: entity id"})
    max_hops = Integer(load_default=6, metadata={"description": "1-10"})
    link_types = List(String(), load_default=None, metadata={"description": _TYPES})
    case_id = Integer(load_default=None, metadata={"description": _SCOPE})


class PathsQuery(PathQuery):
    limit = Integer(load_default=100, metadata={"description": "paths, 1-5000"})


class TimePathsQuery(Schema):
    source = Integer(load_default=None, metadata={"description": "required: entity id"})
    target = Integer(load_default=None, metadata={"description": "optional: entity id"})
    link_types = List(String(), load_default=None,
                      metadata={"description": _TYPES + " (default PAID, CALLED)"})
    max_hops = Integer(load_default=4, metadata={"description": "1-6"})
    limit = Integer(load_default=100, metadata={"description": "paths, 1-5000"})
    case_id = Integer(load_default=None, metadata={"description": _SCOPE})


class SharedQuery(Schema):
    entity_id = List(String(), load_default=None,
                     metadata={"description": "required, at least 2: " + _IDS})
    min_shared = Integer(load_default=2)
    limit = Integer(load_default=500)
    case_id = Integer(load_default=None, metadata={"description": _SCOPE})


class NetworkQuery(Schema):
    limit = Integer(load_default=5000, metadata={"description": "case entities, 1-100000"})


class KeyPlayersQuery(Schema):
    top = Integer(load_default=10, metadata={"description": "1-1000"})


class CommunitiesQuery(Schema):
    method = String(load_default="leiden", metadata={"description": "leiden or louvain"})
    resolution = Float(load_default=1.0, metadata={"description": "above 0, at most 10"})


class GraphNodeOut(Schema):
    id = Integer()
    kind = String()
    label = String(metadata={"description": "as a case you may read calls it; a survivor's "
                                            "pseudonym unless you may see more"})
    survivor = Boolean()
    minor = Boolean(metadata={"description": "under 18 today, from the date of birth"})
    redacted = Boolean()
    role = String(allow_none=True)
    cases = List(Integer(), metadata={"description": "the cases of it you may read"})


class GraphEdgeOut(Schema):
    id = Integer()
    type = String()
    source = Integer()
    target = Integer()
    case_id = Integer()
    first_seen = String(allow_none=True)
    last_seen = String(allow_none=True)
    confidence = Float(allow_none=True)
    count = Integer(allow_none=True)
    amount = Float(allow_none=True)


class SubgraphOut(Schema):
    nodes = List(Nested(GraphNodeOut))
    edges = List(Nested(GraphEdgeOut))
    truncated = Boolean()


class PathOut(Schema):
    nodes = List(Nested(GraphNodeOut), metadata={"description": "in path order"})
    edges = List(Nested(GraphEdgeOut))
    length = Integer()


class ShortestPathOut(Schema):
    path = Nested(PathOut, allow_none=True)


class PathsOut(Schema):
    paths = List(Nested(PathOut))


class SharedRowOut(Schema):
    entity = Nested(GraphNodeOut)
    shared_with = List(Integer())
    edges = List(Nested(GraphEdgeOut))


class SharedOut(Schema):
    shared = List(Nested(SharedRowOut))


class KeyPlayerOut(GraphNodeOut):
    degree = Integer()
    betweenness = Float()
    pagerank = Float()
    rank = Integer()


class KeyPlayersOut(Schema):
    key_players = List(Nested(KeyPlayerOut))


class CommunitiesOut(Schema):
    method = String()
    resolution = Float()
    modularity = Float()
    communities = List(List(Integer()), metadata={"description": "entity ids, largest first"})
    membership = Dict(keys=String(), values=Integer())


class SuggestionOut(Schema):
    entities = List(Nested(GraphNodeOut), metadata={"description": "the two entities"})
    reason = String(metadata={"description": "same_identifier or similar_name_same_dob"})
    score = Float(metadata={"description": "1.0 for a shared identifier; name similarity "
                                           "(rapidfuzz token_sort_ratio / 100) otherwise"})


class DuplicatesOut(Schema):
    suggestions = List(Nested(SuggestionOut))


class MergeIn(Schema):
    keep_id = Integer(load_default=None, allow_none=True,
                      metadata={"description": "required: the entity that stays"})
    absorb_id = Integer(load_default=None, allow_none=True,
                        metadata={"description": "required: the entity merged into it"})
    reason = String(load_default="", validate=Length(max=500))


class MergeOut(Schema):
    id = Integer()
    kept_id = Integer()
    absorbed_id = Integer()
    undone = Boolean()
    entities = List(Nested(GraphNodeOut), metadata={"description": "as they are now"})


# Out -----------------------------------------------------------------------------------

class IdentifierOut(Schema):
    kind = String()
    value = String(metadata={"description": "normalized: what makes two records one entity"})
    display = String()


class EntityCaseRef(Schema):
    id = Integer()
    number = String()
    title = String()
    role = String(allow_none=True)
    label = String(metadata={"description": "as this case entered it (redacted as above)"})
    props = Dict()


class EntityOut(Schema):
    id = Integer()
    kind = String()
    label = String(metadata={"description": "as the case entered it; a survivor's pseudonym "
                                            "unless you may see more"})
    pseudonym = String(allow_none=True)
    survivor = Boolean()
    shielded = Boolean(metadata={"description": "a survivor uses or owns it in this case: "
                                                "protected like the survivor"})
    minor = Boolean(metadata={"description": "under 18 today, from the date of birth"})
    redacted = Boolean(metadata={"description": "identity withheld: you are not the case "
                                                "lead or a victim specialist on it"})
    props = Dict()
    identifiers = List(Nested(IdentifierOut))
    case_id = Integer()
    role = String(allow_none=True)
    created_at = DateTime()


class EntityDetailOut(EntityOut):
    cases = List(Nested(EntityCaseRef), metadata={"description": "only cases you may read"})


class EntityRef(Schema):
    id = Integer()
    kind = String()
    label = String()
    pseudonym = String(allow_none=True)
    survivor = Boolean()
    minor = Boolean()
    redacted = Boolean()


class ProvenanceOut(Schema):
    kind = String()
    ref = String(allow_none=True)


class LinkOut(Schema):
    id = Integer()
    case_id = Integer()
    type = String()
    source = Nested(EntityRef)
    target = Nested(EntityRef)
    provenance = Nested(ProvenanceOut)
    entered_by = String(allow_none=True)
    confidence = Float()
    first_seen = DateTime(allow_none=True)
    last_seen = DateTime(allow_none=True)
    count = Integer()
    amount = Float(allow_none=True)
    created_at = DateTime()
    updated_at = DateTime()


# --- Imports and column mappings (imports.py) ---------------------------------------------

class BadRowOut(Schema):
    line = Integer(metadata={"description": "line of the file (the header is line 1)"})
    reason = String()


class ImportOut(Schema):
    id = Integer()
    case_id = Integer()
    kind = String(metadata={"description": "cdr, bank or generic"})
    status = String(metadata={"description": "queued, running, done or failed"})
    created = Boolean(metadata={"description": "false: this file was imported into this case "
                                               "before; nothing new was made"})
    message = String()
    filename = String(allow_none=True)
    sha256 = String()
    size = Integer()
    evidence_item_id = Integer(allow_none=True)
    mapping_id = Integer(allow_none=True)
    progress = Float(metadata={"description": "0 to 1, by bytes read"})
    rows_read = Integer()
    rows_loaded = Integer()
    rows_bad = Integer()
    rows_skipped = Integer(metadata={"description": "rows with nothing to link (cash at an "
                                                    "ATM)"})
    bad_rows = List(Nested(BadRowOut), metadata={"description": "the first 1,000 bad rows"})
    entities_created = Integer()
    entities_attached = Integer()
    links_created = Integer()
    links_merged = Integer()
    provenance_ref = String(metadata={"description": "what every link of this import names "
                                                     "as its source (provenance kind import)"})
    error = String(allow_none=True)
    created_by = String(allow_none=True)
    created_at = DateTime()
    started_at = DateTime(allow_none=True)
    finished_at = DateTime(allow_none=True)
    status_url = String()
    page_url = String()


class ImportQuery(Schema):
    kind = String(required=True, validate=OneOf(["cdr", "bank", "generic"]))
    filename = String(load_default=None, validate=Length(max=255))
    mapping_id = Integer(load_default=None)
    account = String(load_default=None, validate=Length(max=100),
                     metadata={"description": "bank: the statement's own account "
                                              "(routing:account or IBAN)"})
    cell_sites = String(load_default=None, validate=OneOf(["caller", "callee"]),
                        metadata={"description": "cdr: link the caller's (or callee's) phone "
                                                 "to the cell sites of the cell site column "
                                                 "(ASSOCIATED_WITH a location)"})


class MappingIn(Schema):
    name = String(required=True, validate=Length(max=120))
    source_column = String(required=True, validate=Length(max=120))
    source_kind = String(required=True, metadata={"description": "identifier kind: phone, "
                                                                 "email, bank_account, ..."})
    target_column = String(required=True, validate=Length(max=120))
    target_kind = String(required=True)
    link_type = String(required=True)
    date_column = String(load_default=None, validate=Length(max=120))
    amount_column = String(load_default=None, validate=Length(max=120))
    shared = Boolean(load_default=False, metadata={"description": "keep it for your whole "
                                                                  "agency"})


class MappingOut(Schema):
    id = Integer()
    name = String()
    owner = String(attribute="owner.username")
    shared = Boolean()
    source_column = String()
    source_kind = String()
    target_column = String()
    target_kind = String()
    link_type = String()
    date_column = String(allow_none=True)
    amount_column = String(allow_none=True)
    updated_at = DateTime()


def mapping_out(mapping) -> dict[str, Any]:
    return {"id": mapping.id, "name": mapping.name, "owner": mapping.owner,
            "shared": mapping.agency_id is not None, "source_column": mapping.source_column,
            "source_kind": mapping.source_kind, "target_column": mapping.target_column,
            "target_kind": mapping.target_kind, "link_type": mapping.link_type,
            "date_column": mapping.date_column, "amount_column": mapping.amount_column,
            "updated_at": mapping.updated_at}
