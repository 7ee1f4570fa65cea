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

from collections.abc import Iterable
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

def entity_label(entity: Entity, *, actor: Actor, case: Case | Iterable[Case] | None) -> str:
    """The name to show for an entity: a survivor's pseudonym unless the actor may see more."""
    if entity.is_survivor and not policy.reveals(actor, entity, case):
        return entity.pseudonym or "Survivor"
    return entity.label


def entity_ref(entity: Entity, *, actor: Actor, case: Case | Iterable[Case] | None) -> dict:
    """The few fields a link or a timeline line shows of an entity."""
    revealed = policy.reveals(actor, entity, case)
    return {"id": entity.id, "kind": entity.kind,
            "label": entity.label if revealed else (entity.pseudonym or "Survivor"),
            "pseudonym": entity.pseudonym, "survivor": entity.is_survivor,
            "minor": entity.minor, "redacted": not revealed}


def entity_out(entity: Entity, *, actor: Actor, case: Case | None,
               cases: Iterable[Case] | None = None, role: str | None = None) -> dict:
    """An entity as this actor may see it, in one case (`case`) or, with `cases`,
    across the cases of it the actor may read (then each with its role)."""
    context: list[Case] = list(cases) if cases is not None else ([case] if case else [])
    revealed = policy.reveals(actor, entity, context)
    out = {
        "id": entity.id,
        "kind": entity.kind,
        "label": entity.label if revealed else (entity.pseudonym or "Survivor"),
        "pseudonym": entity.pseudonym,
        "survivor": entity.is_survivor,
        "minor": entity.minor,
        "redacted": not revealed,
        "props": dict(entity.props or {}) if revealed else dict(REDACTED_PROPS),
        "identifiers": [{"kind": i.kind, "value": i.value, "display": i.display or i.value}
                        for i in entity.identifiers] if revealed else [],
        "created_at": entity.created_at,
    }
    if case is not None and cases is None:
        out["case_id"] = case.id
        out["role"] = role
    if cases is not None:
        roles = {ce.case_id: ce.role for ce in entity.case_links}
        out["cases"] = [{"id": c.id, "number": c.number, "title": c.title,
                         "role": roles.get(c.id)} for c in context]
    return out


def case_entity_out(ce: CaseEntity, *, actor: Actor, case: Case) -> dict:
    return entity_out(ce.entity, actor=actor, case=case, role=ce.role)


def _amount(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def link_out(link: Link, *, actor: Actor, case: Case) -> dict:
    return {
        "id": link.id,
        "case_id": link.case_id,
        "type": link.type,
        "source": entity_ref(link.source, actor=actor, case=case),
        "target": entity_ref(link.target, actor=actor, case=case),
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


def network_out(case: Case, entities: Iterable[CaseEntity], links: Iterable[Link], *,
                actor: Actor) -> dict:
    return {"case_id": case.id,
            "entities": [case_entity_out(ce, actor=actor, case=case) for ce in entities],
            "links": [link_out(lk, actor=actor, case=case) for lk in links]}


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


class EntityOut(Schema):
    id = Integer()
    kind = String()
    label = String(metadata={"description": "a survivor's pseudonym unless you may see more"})
    pseudonym = String(allow_none=True)
    survivor = Boolean()
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
