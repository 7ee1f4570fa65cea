"""Graph service: the only place that reads or changes entities and links.

Plain functions with keyword-only arguments and the actor passed in. Each one
loads its case through `investigations.service.get_case_or_404` (the one
access check) *before* it looks at its input, validates everything before it
writes anything (Invalid with `fields`), writes the audit record and the
outbox rows in the same transaction as the change, and commits once. After the
commit it asks for the outbox to be drained; if Neo4j is down that fails
quietly and the rows wait (outbox.py).

Identifiers are normalized (graph.identifiers) before they are stored or
compared: the same identifier entered twice, in any spelling, is one entity,
and entering it in a second case attaches the existing entity to that case.

A person who is a victim/survivor in any case gets a pseudonym
(`Survivor-7K3Q`: random, stable, unique) that everyone without need to know
sees instead of the name (policy.may_see_survivor, schemas.py).
"""
from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError

from taskforce.accounts.permissions import Actor
from taskforce.audit import service as audit
from taskforce.errors import Conflict, Forbidden, Invalid, NotFound
from taskforce.extensions import db
from taskforce.graph import identifiers as idents
from taskforce.graph import outbox, policy, schemas
from taskforce.graph.models import (
    ENTITY_KINDS,
    IDENTIFIER_KINDS_BY_ENTITY,
    LINK_TYPES,
    LOCATION_KINDS,
    PERSON_ROLES,
    PROVENANCE_KINDS,
    SEXES,
    SHIELDING_LINK_TYPES,
    SURVIVOR_ROLE,
    CaseEntity,
    Entity,
    EntityMerge,
    Identifier,
    Link,
)
from taskforce.investigations import policy as case_policy
from taskforce.investigations import timeline as timeline_registry
from taskforce.investigations.models import Case, Note
from taskforce.investigations.service import READ, WRITE, get_case_or_404, now
from taskforce.validation import FieldErrors as _Errors
from taskforce.validation import as_id as _as_id

__all__ = [
    "CaseLinks",
    "CaseNetwork",
    "EntityView",
    "add_entity",
    "add_link",
    "case_network",
    "get_entity",
    "list_entities",
    "list_links",
]

LABEL_MAX = 200
TEXT_MAX = 200
NOTES_MAX = 2000
IDENTIFIERS_MAX = 50
IDENTIFIER_VALUE_MAX = 512
REF_MAX = 64
COUNT_MAX = 10**9
AMOUNT_MAX = Decimal("99999999999999.99")  # Numeric(16, 2)
PSEUDONYM_PREFIX = "Survivor-"
# Crockford-style: no 0/O, 1/I/L or U, so a pseudonym read aloud is not misheard.
PSEUDONYM_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"

_DENIED_ENTITY = "No such entity, or it is not in a case shared with you."
_RACE = "Someone entered the same identifier at the same moment; try again."


def _ensure_open(case: Case) -> None:
    if case.status == "closed":
        raise Conflict("This case is closed; reopen it before adding to it.")


# Input checks -----------------------------------------------------------------------------

def _nul_free(errors: _Errors, name: str, value: Any) -> bool:
    """PostgreSQL text refuses NUL characters: refuse them as input, before anything else."""
    if isinstance(value, str):
        if "\x00" in value:
            errors.add(name, "Must not contain NUL characters.")
            return False
        return True
    if isinstance(value, Mapping):
        parts = [(f"{name}.{k}", v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        parts = [(f"{name}.{i}", v) for i, v in enumerate(value)]
    else:
        return True
    clean = True
    for part, v in parts:  # every part, not just up to the first: each is reported
        clean = _nul_free(errors, part, v) and clean
    return clean


def _identifiers(errors: _Errors, kind: str | None, raw: Any) -> list[idents.Identifier]:
    """Normalize each (kind, value); errors name `identifiers.<i>.kind|value` and give
    the reason InvalidIdentifier gave."""
    if raw in (None, ""):
        return []
    if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Iterable):
        errors.add("identifiers", "Must be a list of identifiers, each a kind and a value.")
        return []
    items = list(raw)
    if len(items) > IDENTIFIERS_MAX:
        errors.add("identifiers", f"At most {IDENTIFIERS_MAX} identifiers.")
        return []
    allowed = IDENTIFIER_KINDS_BY_ENTITY.get(kind or "", ())
    out: dict[tuple[str, str], idents.Identifier] = {}
    for i, item in enumerate(items):
        name = f"identifiers.{i}"
        if isinstance(item, Mapping):
            ikind, value = item.get("kind"), item.get("value")
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            ikind, value = item
        else:
            errors.add(name, "Must be a kind and a value.")
            continue
        if not isinstance(ikind, str) or not ikind.strip():
            errors.add(f"{name}.kind", "Required.")
            continue
        ikind = ikind.strip().lower()
        if value is not None and (not isinstance(value, (str, int)) or isinstance(value, bool)):
            errors.add(f"{name}.value", "Must be text.")
            continue
        try:
            ident = idents.normalize(ikind, value)
        except idents.InvalidIdentifier as exc:
            field = "kind" if ikind not in idents.KINDS else "value"
            errors.add(f"{name}.{field}", exc.reason)
            continue
        if kind and ident.kind not in allowed:
            takes = ", ".join(allowed) if allowed else "none"
            errors.add(f"{name}.kind", f"A {ENTITY_KINDS[kind].lower()} cannot carry a "
                                       f"{ident.kind} identifier (it takes: {takes}).")
            continue
        if len(ident.value) > IDENTIFIER_VALUE_MAX or len(ident.display) > IDENTIFIER_VALUE_MAX:
            errors.add(f"{name}.value", f"At most {IDENTIFIER_VALUE_MAX} characters.")
            continue
        out.setdefault(ident.key, ident)
    return list(out.values())


def _text_prop(errors: _Errors, name: str, value: Any, max_len: int = TEXT_MAX) -> str | None:
    if not isinstance(value, str):
        errors.add(name, "Must be text.")
        return None
    value = value.strip()
    if len(value) > max_len:
        errors.add(name, f"At most {max_len} characters.")
        return None
    return value or None


def _text_list(errors: _Errors, name: str, value: Any) -> list[str] | None:
    if isinstance(value, str):
        value = [v for v in value.split(",")]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        errors.add(name, "Must be a list of names.")
        return None
    if len(value) > 50:
        errors.add(name, "At most 50 names.")
        return None
    out = [v.strip() for v in value if v.strip()]
    if any(len(v) > TEXT_MAX for v in out):
        errors.add(name, f"Each at most {TEXT_MAX} characters.")
        return None
    return out or None


def _choice_prop(choices: Mapping[str, str]):
    def check(errors: _Errors, name: str, value: Any) -> str | None:
        if value not in choices:
            errors.add(name, "Must be one of: " + ", ".join(choices) + ".")
            return None
        return value
    return check


def _number_prop(low: float, high: float):
    def check(errors: _Errors, name: str, value: Any) -> float | None:
        number = _to_float(value)
        if number is None or not low <= number <= high:
            errors.add(name, f"Must be a number from {low:g} to {high:g}.")
            return None
        return number
    return check


def _year_prop(errors: _Errors, name: str, value: Any) -> int | None:
    number = _to_float(value)
    if number is None or number != int(number) or not 1900 <= number <= 2100:
        errors.add(name, "Must be a year (1900-2100).")
        return None
    return int(number)


def _dob_prop(errors: _Errors, name: str, value: Any) -> str | None:
    try:
        return idents.parse_date_of_birth(value).isoformat()
    except idents.InvalidIdentifier as exc:
        errors.add(name, exc.reason)
        return None


def _date_prop(errors: _Errors, name: str, value: Any) -> str | None:
    parsed = errors.date(name, value)
    return parsed.isoformat() if parsed else None


def _notes_prop(errors: _Errors, name: str, value: Any) -> str | None:
    return _text_prop(errors, name, value, NOTES_MAX)


_TEXT = _text_prop
PROPS: dict[str, dict[str, Any]] = {
    "person": {"names": _text_list, "aliases": _text_list, "dob": _dob_prop,
               "sex": _choice_prop(SEXES)},
    "location": {"address": _TEXT, "lat": _number_prop(-90, 90), "lon": _number_prop(-180, 180),
                 "location_kind": _choice_prop(LOCATION_KINDS)},
    "phone": {"carrier": _TEXT, "line_type": _TEXT},
    "email": {"provider": _TEXT},
    "bank_account": {"bank": _TEXT, "holder": _TEXT},
    "crypto_wallet": {"exchange": _TEXT},
    "online_account": {"platform": _TEXT, "handle": _TEXT},
    "ad": {"platform": _TEXT, "title": _TEXT, "posted_on": _date_prop},
    "vehicle": {"make": _TEXT, "model": _TEXT, "color": _TEXT, "year": _year_prop},
    "organization": {"business_type": _TEXT, "address": _TEXT},
}
COMMON_PROPS = {"notes": _notes_prop}


def _props(errors: _Errors, kind: str | None, raw: Any) -> dict[str, Any]:
    if raw in (None, ""):
        return {}
    if not isinstance(raw, Mapping):
        errors.add("props", "Must be an object of details.")
        return {}
    if kind is None:
        return {}
    rules = {**PROPS[kind], **COMMON_PROPS}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"props.{key}"
        check = rules.get(key)
        if check is None:
            errors.add(name, f"Not a detail of a {ENTITY_KINDS[kind].lower()}; "
                             f"known: {', '.join(rules)}.")
            continue
        if value in (None, "", []):
            continue
        checked = check(errors, name, value)
        if checked is not None:
            out[key] = checked
    if ("lat" in out) != ("lon" in out) and not errors.fields.get("props.lat") \
            and not errors.fields.get("props.lon"):
        errors.add("props.lat" if "lat" not in out else "props.lon",
                   "Give latitude and longitude together.")
    return out


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _instant(errors: _Errors, name: str, value: Any) -> datetime | None:
    """A date (taken as 00:00 UTC) or a date-time (naive taken as UTC), ISO 8601."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            errors.add(name, "Must be a date or date-time (YYYY-MM-DD or YYYY-MM-DDTHH:MM).")
            return None
    else:
        errors.add(name, "Must be a date or date-time (YYYY-MM-DD or YYYY-MM-DDTHH:MM).")
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    parsed = parsed.astimezone(UTC)
    if not 1900 <= parsed.year <= 2200:
        errors.add(name, "Must be a plausible date.")
        return None
    return parsed


def _confidence(errors: _Errors, value: Any) -> float:
    if value in (None, ""):
        return 1.0
    number = _to_float(value)
    if number is None or not 0.0 <= number <= 1.0:
        errors.add("confidence", "Must be a number from 0 to 1.")
        return 1.0
    return number


def _count(errors: _Errors, value: Any) -> int:
    if value in (None, ""):
        return 1
    number = _to_float(value)
    if number is None or number != int(number) or not 1 <= number <= COUNT_MAX:
        errors.add("count", f"Must be a whole number from 1 to {COUNT_MAX}.")
        return 1
    return int(number)


def _amount(errors: _Errors, value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        errors.add("amount", "Must be an amount of money, 0 or more.")
        return None
    try:
        amount = Decimal(str(value).strip().replace(",", "").lstrip("$"))
    except InvalidOperation:
        errors.add("amount", "Must be an amount of money, 0 or more.")
        return None
    if not amount.is_finite() or amount < 0 or amount > AMOUNT_MAX:
        errors.add("amount", "Must be an amount of money, 0 or more.")
        return None
    return amount.quantize(Decimal("0.01"))


# Pseudonyms -------------------------------------------------------------------------------

def _new_pseudonym() -> str:
    """Random, unique among entities; four characters (a million) while that is plenty."""
    for length in (4, 4, 4, 4, 4, 6, 6, 6, 8, 8):
        candidate = PSEUDONYM_PREFIX + "".join(secrets.choice(PSEUDONYM_ALPHABET)
                                               for _ in range(length))
        with db.session.no_autoflush:
            taken = db.session.scalar(select(Entity.id).where(Entity.pseudonym == candidate))
        if taken is None:
            return candidate
    db.session.rollback()  # never leave a partial write behind
    raise Conflict("Could not pick a free pseudonym; try again.")


# Entities ---------------------------------------------------------------------------------

def _case_entity(case_id: int, entity_id: int) -> CaseEntity | None:
    return db.session.scalar(select(CaseEntity).where(CaseEntity.case_id == case_id,
                                                      CaseEntity.entity_id == entity_id))


def add_entity(*, actor: Actor, case_id: Any, kind: Any, label: Any = "",
               identifiers: Any = (), props: Any = None, case_role: Any = None) -> Entity:
    """Add an entity to a case, or attach the existing one its identifiers name.

    Needs contribute (WRITE) access. Identifiers are normalized; when one already
    exists, its entity is attached to this case (with the identifiers it lacked,
    and the details it lacked) instead of a new one being made. A person whose
    case role is victim gets a pseudonym.
    """
    for attempt in (1, 2):
        try:
            return _add_entity(actor=actor, case_id=case_id, kind=kind, label=label,
                               identifiers=identifiers, props=props, case_role=case_role)
        except IntegrityError:
            db.session.rollback()
            if attempt == 2:
                raise Conflict(_RACE) from None
    raise AssertionError("unreachable")


def _add_entity(*, actor: Actor, case_id: Any, kind: Any, label: Any, identifiers: Any,
                props: Any, case_role: Any) -> Entity:
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE, attempt="entity.add")
    _ensure_open(case)
    errors = _Errors()
    for name, value in (("kind", kind), ("label", label), ("identifiers", identifiers),
                        ("props", props), ("case_role", case_role)):
        _nul_free(errors, name, value)
    errors.raise_if_any()
    if isinstance(kind, str):
        kind = kind.strip().lower()
    kind = errors.choice("kind", kind, ENTITY_KINDS)
    label = errors.text("label", label, max_len=LABEL_MAX, required=False)
    found = _identifiers(errors, kind, identifiers)
    details = _props(errors, kind, props)
    role = errors.choice("case_role", case_role or None, PERSON_ROLES, required=False)
    if role and kind and kind != "person":
        errors.add("case_role", "Only a person has a role in a case.")
    if kind and not label:
        label = (details.get("names") or [None])[0] or (found[0].display if found else "")
        if not label:
            errors.add("label", "Required (or give a name or an identifier).")
    existing = _existing_entity(errors, kind, found)
    errors.raise_if_any()

    at = now()
    changed = False
    if existing is None:
        entity = Entity(kind=kind, created_by_id=actor.user_id, created_at=at, updated_at=at)
        db.session.add(entity)
        changed = True
    else:
        entity = existing
    known = {(i.kind, i.value) for i in entity.identifiers} if existing is not None else set()
    added_identifiers = [i for i in found if i.key not in known]
    for ident in added_identifiers:
        entity.identifiers.append(Identifier(kind=ident.kind, value=ident.value,
                                             display=ident.display or ident.value,
                                             created_by_id=actor.user_id, created_at=at))
        changed = True
    db.session.flush()

    # What this case says about the entity is this case's own (need to know): another
    # case sharing the identifier never sees it, and it never overwrites theirs.
    membership = _case_entity(case.id, entity.id)
    attached = membership is None
    entered = [[i.kind, i.value] for i in found]
    if membership is None:
        membership = CaseEntity(case_id=case.id, entity_id=entity.id, role=role,
                                label=label[:LABEL_MAX], props=details,
                                identifier_keys=entered,
                                added_by_id=actor.user_id, added_at=at)
        db.session.add(membership)
        changed = True
    else:
        if role and membership.role != role:
            membership.role = role
            changed = True
        missing = {k: v for k, v in details.items() if k not in (membership.props or {})}
        if missing:  # fill in what the case had not said; never overwrite it
            membership.props = {**(membership.props or {}), **missing}
            changed = True
        keys = [list(k) for k in membership.identifier_keys or []]
        new_keys = [k for k in entered if k not in keys]
        if new_keys:
            membership.identifier_keys = keys + new_keys
        if not membership.label and label:
            membership.label = label[:LABEL_MAX]
            changed = True
    became_survivor = False
    if membership.role == SURVIVOR_ROLE and entity.pseudonym is None:
        entity.pseudonym = _new_pseudonym()
        changed = became_survivor = True
    if changed:
        entity.updated_at = at
        case.updated_at = at
    db.session.flush()
    db.session.expire(entity, ["case_links"])
    if changed:
        outbox.enqueue("upsert_entity", entity.id)
    if became_survivor:  # the phones and accounts this person uses are now shielded
        for other in _shielding_neighbours(entity.id):
            outbox.enqueue("upsert_entity", other)
    audit.record(actor=actor, action="entity.add" if existing is None else "entity.attach",
                 object_type="entity", object_id=entity.id, case_id=case.id,
                 details={"kind": entity.kind, "role": membership.role,
                          "identifier_kinds": sorted({i.kind for i in found}),
                          "identifiers_added": len(added_identifiers),
                          "existing": existing is not None, "attached": attached,
                          "changed": changed})
    if found:  # every identifier entered is checked against every agency, in this transaction
        from taskforce.deconfliction import service as deconfliction

        deconfliction.register(actor=actor, case_id=case.id, identifiers=found,
                               entity_id=entity.id, commit=False)
    db.session.commit()
    if changed:
        outbox.request_drain()
    return entity


def _shielding_neighbours(entity_id: int) -> list[int]:
    """Entities tied to this one by a USES or OWNS link (policy.shields)."""
    rows = db.session.execute(select(Link.source_id, Link.target_id).where(
        or_(Link.source_id == entity_id, Link.target_id == entity_id),
        Link.type.in_(SHIELDING_LINK_TYPES))).all()
    return sorted({s if s != entity_id else t for s, t in rows})


def _existing_entity(errors: _Errors, kind: str | None,
                     found: list[idents.Identifier]) -> Entity | None:
    if not found or kind is None:
        return None
    rows = db.session.execute(
        select(Identifier.entity_id, Identifier.kind, Identifier.value)
        .where(or_(*[and_(Identifier.kind == i.kind, Identifier.value == i.value)
                     for i in found]))).all()
    owners = sorted({r.entity_id for r in rows})
    if not owners:
        return None
    if len(owners) > 1:
        errors.add("identifiers", "These identifiers already belong to different entities; "
                                  "enter them separately (or merge those entities first).")
        return None
    entity = db.session.get(Entity, owners[0])
    if entity.kind != kind:
        errors.add("identifiers", f"This identifier already names a "
                                  f"{ENTITY_KINDS[entity.kind].lower()}, not a "
                                  f"{ENTITY_KINDS[kind].lower()}.")
        return None
    return entity


@dataclass
class EntityView:
    """An entity and the cases of it the actor may read."""

    entity: Entity
    cases: list[Case]


def get_entity(*, actor: Actor, entity_id: Any) -> EntityView:
    """The entity, if it is in at least one case the actor may read; otherwise NotFound
    (the same answer as for no such entity)."""
    row_id = _as_id(entity_id)
    entity = db.session.get(Entity, row_id) if row_id is not None else None
    cases: list[Case] = []
    if entity is not None and entity.case_ids:
        cases = list(db.session.scalars(
            select(Case).where(Case.id.in_(entity.case_ids),
                               Case.id.in_(policy.visible_case_ids(actor)))
            .order_by(Case.id)))
    if not cases:
        audit.record_now(actor=actor, action="entity.read", outcome="denied",
                         object_type="entity", object_id=entity_id)
        raise NotFound(_DENIED_ENTITY)
    audit.record(actor=actor, action="entity.read", object_type="entity", object_id=entity.id,
                 case_id=cases[0].id if len(cases) == 1 else None,
                 details={"cases": [c.id for c in cases],
                          "revealed": policy.reveals(actor, entity, cases,
                                                     policy.shields([entity.id]).get(entity.id))})
    db.session.commit()
    return EntityView(entity=entity, cases=cases)


@dataclass
class CaseEntities:
    case: Case
    items: list[CaseEntity]


def list_entities(*, actor: Actor, case_id: Any, kind: Any = None) -> CaseEntities:
    """The case's entities (with each one's role in it), in the order they were added."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="entity.list")
    errors = _Errors()
    kind = errors.choice("kind", kind, ENTITY_KINDS, required=False)
    errors.raise_if_any()
    items = _case_entities(case, kind)
    audit.record(actor=actor, action="entity.list", object_type="case", object_id=case.id,
                 case_id=case.id, details={"kind": kind, "returned": len(items)})
    db.session.commit()
    return CaseEntities(case=case, items=items)


def _case_entities(case: Case, kind: str | None = None) -> list[CaseEntity]:
    query = select(CaseEntity).join(CaseEntity.entity).where(CaseEntity.case_id == case.id)
    if kind:
        query = query.where(Entity.kind == kind)
    return list(db.session.scalars(query.order_by(CaseEntity.added_at, CaseEntity.id)))


# Links ------------------------------------------------------------------------------------

def add_link(*, actor: Actor, case_id: Any, source_id: Any, target_id: Any, type: Any,
             provenance_kind: Any = "manual", provenance_ref: Any = None,
             first_seen: Any = None, last_seen: Any = None, confidence: Any = None,
             count: Any = None, amount: Any = None) -> Link:
    """Record that two entities of the case are linked, and where that came from.

    One link per (case, source, target, type, provenance): the same source stating
    the same link again is merged into it (the seen window widened, the count,
    amount and confidence raised to the larger), so re-importing a file changes
    nothing. An importer states each link once per file, with its totals.
    """
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE, attempt="link.add")
    _ensure_open(case)
    errors = _Errors()
    for name, value in (("type", type), ("provenance_kind", provenance_kind),
                        ("provenance_ref", provenance_ref), ("first_seen", first_seen),
                        ("last_seen", last_seen)):
        _nul_free(errors, name, value)
    errors.raise_if_any()
    src = errors.integer("source_id", source_id)
    tgt = errors.integer("target_id", target_id)
    if isinstance(type, str):
        type = type.strip().upper()
    link_type = errors.choice("type", type, LINK_TYPES)
    pkind = errors.choice("provenance_kind", provenance_kind or "manual", PROVENANCE_KINDS)
    pref = errors.text("provenance_ref", "" if provenance_ref is None else str(provenance_ref),
                       max_len=REF_MAX, required=False)
    if pkind == "manual" and pref:
        errors.add("provenance_ref", "Leave empty for a link entered by hand.")
    elif pkind in ("evidence", "import", "note") and not pref:
        errors.add("provenance_ref", f"Name the {PROVENANCE_KINDS[pkind].lower()} it came from.")
    elif pkind == "note":
        note_id = _as_id(pref)
        note = db.session.get(Note, note_id) if note_id is not None else None
        if note is None or note.case_id != case.id:
            errors.add("provenance_ref", "No such note on this case.")
        else:
            pref = str(note.id)
    first = _instant(errors, "first_seen", first_seen)
    last = _instant(errors, "last_seen", last_seen)
    if first and last and first > last:
        errors.add("last_seen", "Must not be before first_seen.")
    conf = _confidence(errors, confidence)
    n = _count(errors, count)
    money = _amount(errors, amount)
    ends: dict[str, Entity] = {}
    for name, eid in (("source_id", src), ("target_id", tgt)):
        if eid is None:
            continue
        membership = _case_entity(case.id, eid)
        if membership is None:
            errors.add(name, "Not an entity of this case.")
        else:
            ends[name] = membership.entity
    if src is not None and src == tgt:
        errors.add("target_id", "A link joins two different entities.")
    target = ends.get("target_id")
    if link_type in ("LIVES_AT", "STAYED_AT") and target is not None \
            and target.kind != "location":
        errors.add("target_id", f"{link_type} ends at a location.")
    if link_type == "WORKS_AT" and target is not None \
            and target.kind not in ("location", "organization"):
        errors.add("target_id", "WORKS_AT ends at a location or an organization.")
    errors.raise_if_any()

    at = now()
    link = db.session.scalar(select(Link).where(
        Link.case_id == case.id, Link.source_id == src, Link.target_id == tgt,
        Link.type == link_type, Link.provenance_kind == pkind, Link.provenance_ref == pref))
    merged = link is not None
    if link is None:
        link = Link(case_id=case.id, source_id=src, target_id=tgt, type=link_type,
                    provenance_kind=pkind, provenance_ref=pref, entered_by_id=actor.user_id,
                    confidence=conf, first_seen=first, last_seen=last, count=n, amount=money,
                    created_at=at, updated_at=at)
        db.session.add(link)
        changed = True
    else:
        changed = _merge(link, first=first, last=last, confidence=conf, count=n, amount=money)
        if changed:
            link.updated_at = at
    if changed:
        case.updated_at = at
    db.session.flush()
    if changed:
        outbox.enqueue("upsert_link", link.id)
    if not merged and link_type in SHIELDING_LINK_TYPES:  # a survivor's phone is shielded
        outbox.enqueue("upsert_entity", src)
        outbox.enqueue("upsert_entity", tgt)
    audit.record(actor=actor, action="link.merge" if merged else "link.add", object_type="link",
                 object_id=link.id, case_id=case.id,
                 details={"type": link_type, "source_id": src, "target_id": tgt,
                          "provenance": pkind, "ref": pref or None, "changed": changed})
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("The same link was recorded at the same moment; reload and check.") \
            from None
    if changed:
        outbox.request_drain()
    return link


def _merge(link: Link, *, first: datetime | None, last: datetime | None, confidence: float,
           count: int, amount: Decimal | None) -> bool:
    """Join a restatement into the link: idempotent, and the order does not matter."""
    before = (link.first_seen, link.last_seen, link.confidence, link.count, link.amount)
    if first is not None:
        link.first_seen = first if link.first_seen is None else min(link.first_seen, first)
    if last is not None:
        link.last_seen = last if link.last_seen is None else max(link.last_seen, last)
    link.confidence = max(link.confidence, confidence)
    link.count = max(link.count, count)
    if amount is not None:
        link.amount = amount if link.amount is None else max(link.amount, amount)
    return before != (link.first_seen, link.last_seen, link.confidence, link.count, link.amount)


@dataclass
class CaseLinks:
    case: Case
    items: list[Link]


def list_links(*, actor: Actor, case_id: Any, type: Any = None) -> CaseLinks:
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="link.list")
    errors = _Errors()
    link_type = errors.choice("type", type, LINK_TYPES, required=False)
    errors.raise_if_any()
    items = _case_links(case, link_type)
    audit.record(actor=actor, action="link.list", object_type="case", object_id=case.id,
                 case_id=case.id, details={"type": link_type, "returned": len(items)})
    db.session.commit()
    return CaseLinks(case=case, items=items)


def _case_links(case: Case, link_type: str | None = None) -> list[Link]:
    query = select(Link).where(Link.case_id == case.id)
    if link_type:
        query = query.where(Link.type == link_type)
    return list(db.session.scalars(query.order_by(Link.first_seen.is_(None), Link.first_seen,
                                                  Link.id)))


# The case's network ----------------------------------------------------------------------

@dataclass
class CaseNetwork:
    case: Case
    access: Any
    entities: list[CaseEntity]
    links: list[Link]

    @property
    def can_contribute(self) -> bool:
        return self.access >= WRITE and self.case.status != "closed"


def case_network(*, actor: Actor, case_id: Any) -> CaseNetwork:
    """Every entity and link of the case, read (and audited) at once."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="case.network")
    entities = _case_entities(case)
    links = _case_links(case)
    audit.record(actor=actor, action="case.network", object_type="case", object_id=case.id,
                 case_id=case.id, details={"entities": len(entities), "links": len(links),
                                           "revealed": policy.may_see_survivor(actor, case)})
    db.session.commit()
    return CaseNetwork(case=case, access=case_policy.access(actor, case), entities=entities,
                       links=links)


# Timeline: links with dates ----------------------------------------------------------------

def _link_summary(link: Link, actor: Actor, case: Case,
                  shields: policy.Shields | None = None) -> str:
    src = schemas.entity_label(link.source, actor=actor, case=case, shields=shields)
    tgt = schemas.entity_label(link.target, actor=actor, case=case, shields=shields)
    extra = []
    if link.count > 1:
        extra.append(f"{link.count} times")
    if link.amount is not None:
        extra.append(f"${link.amount:,.2f}")
    tail = f" ({', '.join(extra)})" if extra else ""
    return f"{src} {LINK_TYPES[link.type]} {tgt}{tail}"


@timeline_registry.timeline_source("link")
def _links_timeline(case: Case, actor: Actor):
    """Links with dates: first seen, and last seen when it differs. Labels redacted
    for this actor like everywhere else (schemas.entity_label)."""
    links = list(db.session.scalars(select(Link).where(Link.case_id == case.id,
                                                       Link.first_seen.is_not(None)
                                                       | Link.last_seen.is_not(None))))
    shields = policy.shields({i for lk in links for i in (lk.source_id, lk.target_id)})
    for link in links:
        summary = _link_summary(link, actor, case, shields)
        source = f"{PROVENANCE_KINDS[link.provenance_kind]}" + (
            f" {link.provenance_ref}" if link.provenance_ref else "")
        who = link.entered_by.username if link.entered_by is not None else None
        if link.first_seen is not None:
            yield timeline_registry.TimelineEvent(
                at=link.first_seen, kind="link", summary=f"First seen: {summary}", actor=who,
                detail=f"Source: {source}", object_type="link", object_id=link.id)
        if link.last_seen is not None and link.last_seen != link.first_seen:
            yield timeline_registry.TimelineEvent(
                at=link.last_seen, kind="link", summary=f"Last seen: {summary}", actor=who,
                detail=f"Source: {source}", object_type="link", object_id=link.id)


# Entity resolution: suggested duplicates, merge, unmerge ------------------------------------

SIMILAR_NAME_SCORE = 85.0  # rapidfuzz token_sort_ratio, 0-100, on folded names
SUGGESTIONS_MAX = 200
REASON_MAX = 500
_FOLD = str.maketrans("", "", ".,'-_\"")


@dataclass
class Suggestion:
    entities: tuple[int, int]
    reason: str  # same_identifier | similar_name_same_dob
    score: float
    detail: str


@dataclass
class Duplicates:
    case: Case
    case_ids: list[int]
    suggestions: list[Suggestion]


def _fold(text: str) -> str:
    import unicodedata

    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(plain.translate(_FOLD).casefold().split())


def _keys_of(entity: Entity, memberships: list[CaseEntity]) -> set[tuple[str, str]]:
    """The normalized identifiers an entity is known by to this reader: its identifiers
    the visible cases entered, plus its labels and details read as identifiers of its
    kind (a phone entered by label only, an address typed in a note field)."""
    keys = {tuple(k) for ce in memberships for k in (ce.identifier_keys or [])}
    kinds = IDENTIFIER_KINDS_BY_ENTITY.get(entity.kind, ())
    texts = [ce.label for ce in memberships if ce.label]
    texts += [str(ce.props.get(p)) for ce in memberships for p in ("address", "handle")
              if (ce.props or {}).get(p)]
    for text in texts:
        for kind in kinds:
            if kind == "person":
                continue
            try:
                keys.add(idents.normalize(kind, text).key)
            except idents.InvalidIdentifier:
                continue
    if entity.kind not in ("person",) and texts:  # the same name of a business or motel
        keys |= {(f"name:{entity.kind}", _fold(t)) for t in texts if _fold(t)}
    return keys


def suggest_duplicates(*, actor: Actor, case_id: Any) -> Duplicates:
    """Entities of this case that may be the same as another entity the actor may see
    (in this case or another case the actor may read):

    * ``same_identifier``: they share a normalized identifier (one entered as a label
      or detail counts, e.g. a phone number typed as the name of a phone);
    * ``similar_name_same_dob``: people with the same date of birth (the blocking key,
      so only people born the same day are compared) whose names are similar
      (rapidfuzz token_sort_ratio >= SIMILAR_NAME_SCORE on folded names and aliases).

    Only what the actor's readable cases say is compared, so a suggestion never rests on
    another case's words. Survivors are included (merging them is the case's work) and
    shown through the same redacting serializers."""
    from rapidfuzz import fuzz

    case = get_case_or_404(actor=actor, case_id=case_id, action=READ,
                           attempt="entity.duplicates")
    readable = policy.readable_case_ids(actor)
    rows = list(db.session.scalars(select(CaseEntity).join(CaseEntity.entity).where(
        CaseEntity.case_id.in_(readable), Entity.merged_into_id.is_(None))))
    by_entity: dict[int, list[CaseEntity]] = {}
    for ce in rows:
        by_entity.setdefault(ce.entity_id, []).append(ce)
    mine = {ce.entity_id for ce in rows if ce.case_id == case.id}
    entities = {ce.entity_id: ce.entity for ce in rows}
    found: dict[tuple[int, int], Suggestion] = {}

    def offer(a: int, b: int, reason: str, score: float, detail: str) -> None:
        if a == b or (a not in mine and b not in mine):
            return
        if entities[a].kind != entities[b].kind:
            return
        pair = (min(a, b), max(a, b))
        best = found.get(pair)
        if best is None or score > best.score:
            found[pair] = Suggestion(pair, reason, round(score, 3), detail)

    owners: dict[tuple[str, str], set[int]] = {}
    for eid, memberships in by_entity.items():
        for key in _keys_of(entities[eid], memberships):
            owners.setdefault(key, set()).add(eid)
    for key, ids in owners.items():
        for a in ids:
            for b in ids:
                if a < b:
                    offer(a, b, "same_identifier", 1.0, key[0].split(":")[0])

    blocks: dict[str, list[tuple[int, list[str]]]] = {}
    for eid, memberships in by_entity.items():
        if entities[eid].kind != "person":
            continue
        names = {_fold(n) for ce in memberships
                 for n in [ce.label, *(ce.props or {}).get("names", []),
                           *(ce.props or {}).get("aliases", [])] if n and _fold(n)}
        for dob in {str(ce.props.get("dob")) for ce in memberships if (ce.props or {}).get("dob")}:
            blocks.setdefault(dob, []).append((eid, sorted(names)))
    for people in blocks.values():
        for i, (a, names_a) in enumerate(people):
            for b, names_b in people[i + 1:]:
                score = max((fuzz.token_sort_ratio(x, y) for x in names_a for y in names_b),
                            default=0.0)
                if score >= SIMILAR_NAME_SCORE:
                    offer(a, b, "similar_name_same_dob", score / 100, "dob")

    suggestions = sorted(found.values(), key=lambda s: (-s.score, s.entities))[:SUGGESTIONS_MAX]
    audit.record(actor=actor, action="entity.duplicates", object_type="case", object_id=case.id,
                 case_id=case.id, details={"returned": len(suggestions)})
    db.session.commit()
    return Duplicates(case=case, case_ids=readable, suggestions=suggestions)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _ce_state(ce: CaseEntity) -> dict[str, Any]:
    return {"id": ce.id, "case_id": ce.case_id, "entity_id": ce.entity_id, "role": ce.role,
            "label": ce.label, "props": dict(ce.props or {}),
            "identifier_keys": [list(k) for k in ce.identifier_keys or []],
            "added_by_id": ce.added_by_id, "added_at": _iso(ce.added_at)}


def _link_state(lk: Link) -> dict[str, Any]:
    return {"id": lk.id, "case_id": lk.case_id, "source_id": lk.source_id,
            "target_id": lk.target_id, "type": lk.type, "provenance_kind": lk.provenance_kind,
            "provenance_ref": lk.provenance_ref, "entered_by_id": lk.entered_by_id,
            "confidence": lk.confidence, "first_seen": _iso(lk.first_seen),
            "last_seen": _iso(lk.last_seen), "count": lk.count,
            "amount": None if lk.amount is None else str(lk.amount),
            "created_at": _iso(lk.created_at), "updated_at": _iso(lk.updated_at)}


def _apply_ce(ce: CaseEntity, state: dict[str, Any]) -> None:
    for key in ("case_id", "entity_id", "role", "label", "props", "identifier_keys",
                "added_by_id"):
        setattr(ce, key, state[key])
    ce.added_at = _from_iso(state["added_at"])


def _apply_link(lk: Link, state: dict[str, Any]) -> None:
    for key in ("case_id", "source_id", "target_id", "type", "provenance_kind",
                "provenance_ref", "entered_by_id", "confidence", "count"):
        setattr(lk, key, state[key])
    for key in ("first_seen", "last_seen", "created_at", "updated_at"):
        setattr(lk, key, _from_iso(state[key]))
    lk.amount = None if state["amount"] is None else Decimal(state["amount"])


def _require_contribute(actor: Actor, case_ids: Iterable[int]) -> None:
    for cid in sorted(set(case_ids)):
        c = db.session.get(Case, cid)
        if c is None or case_policy.access(actor, c) < WRITE or c.status == "closed":
            raise Forbidden("You may merge or unmerge only entities whose every case you can "
                            "contribute to (and none of them closed).")


def merge_entities(*, actor: Actor, case_id: Any, keep_id: Any, absorb_id: Any,
                   reason: Any = "") -> EntityMerge:
    """Merge `absorb_id` into `keep_id`: its identifiers, case memberships and links move
    to the kept entity (a membership of the same case is joined into the kept one's,
    what the kept one says winning; a link that becomes a restatement of one the kept
    entity has is folded into it; a link between the two goes). Everything changed is
    recorded as it was (EntityMerge.before) so `unmerge_entities` restores both exactly.
    Needs contribute access to every case holding either entity; audited; the graph
    follows through the outbox."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE, attempt="entity.merge")
    _ensure_open(case)
    errors = _Errors()
    _nul_free(errors, "reason", reason)
    errors.raise_if_any()
    keep_n = errors.integer("keep_id", keep_id)
    absorb_n = errors.integer("absorb_id", absorb_id)
    why = errors.text("reason", reason or "", max_len=REASON_MAX, required=False)
    errors.raise_if_any()
    visible = set(policy.readable_case_ids(actor))
    ents: dict[str, Entity] = {}
    for name, eid in (("keep_id", keep_n), ("absorb_id", absorb_n)):
        e = db.session.get(Entity, eid)
        if e is None or e.merged_into_id is not None or not set(e.case_ids) & visible:
            errors.add(name, "No such entity, or it is not in a case shared with you.")
        else:
            ents[name] = e
    if keep_n == absorb_n:
        errors.add("absorb_id", "An entity cannot be merged into itself.")
    errors.raise_if_any()
    keep, gone = ents["keep_id"], ents["absorb_id"]
    if case.id not in set(keep.case_ids) | set(gone.case_ids):
        errors.add("keep_id", "Neither entity is in this case.")
    if keep.kind != gone.kind:
        errors.add("absorb_id", f"A {ENTITY_KINDS[gone.kind].lower()} cannot be merged into a "
                                f"{ENTITY_KINDS[keep.kind].lower()}.")
    errors.raise_if_any()
    _require_contribute(actor, set(keep.case_ids) | set(gone.case_ids))

    at = now()
    shared_cases = set(keep.case_ids) & set(gone.case_ids)
    links = list(db.session.scalars(select(Link).where(
        or_(Link.source_id == gone.id, Link.target_id == gone.id)).order_by(Link.id)))
    before: dict[str, Any] = {
        "kept_pseudonym": keep.pseudonym, "absorbed_pseudonym": gone.pseudonym,
        "identifiers": [i.id for i in gone.identifiers],
        "absorbed_memberships": [_ce_state(ce) for ce in gone.case_links],
        "kept_memberships": [_ce_state(ce) for ce in keep.case_links
                             if ce.case_id in shared_cases],
        "links": [_link_state(lk) for lk in links],
        "deleted_links": [], "folded_into": [],
    }
    for ident in list(gone.identifiers):
        ident.entity_id = keep.id
    for ce in list(gone.case_links):
        mine = keep.in_case(ce.case_id)
        if mine is None:
            ce.entity_id = keep.id
            continue
        mine.props = {**(ce.props or {}), **(mine.props or {})}
        keys = [list(k) for k in mine.identifier_keys or []]
        mine.identifier_keys = keys + [list(k) for k in ce.identifier_keys or []
                                       if list(k) not in keys]
        mine.label = mine.label or ce.label
        mine.role = mine.role or ce.role
        db.session.delete(ce)
    db.session.flush()
    for lk in links:
        src = keep.id if lk.source_id == gone.id else lk.source_id
        tgt = keep.id if lk.target_id == gone.id else lk.target_id
        if src == tgt:  # a link between the two: nothing left to join
            before["deleted_links"].append(lk.id)
            db.session.delete(lk)
            continue
        same = db.session.scalar(select(Link).where(
            Link.case_id == lk.case_id, Link.source_id == src, Link.target_id == tgt,
            Link.type == lk.type, Link.provenance_kind == lk.provenance_kind,
            Link.provenance_ref == lk.provenance_ref, Link.id != lk.id))
        if same is not None:  # the same statement about the kept entity: fold it in
            before["folded_into"].append(_link_state(same))
            before["deleted_links"].append(lk.id)
            _merge(same, first=lk.first_seen, last=lk.last_seen, confidence=lk.confidence,
                   count=lk.count, amount=lk.amount)
            same.updated_at = at
            db.session.delete(lk)
            continue
        lk.source_id, lk.target_id, lk.updated_at = src, tgt, at
    db.session.flush()
    if gone.pseudonym is not None and keep.pseudonym is None:
        moved, gone.pseudonym = gone.pseudonym, None
        db.session.flush()
        keep.pseudonym = moved
    elif any(ce.role == SURVIVOR_ROLE for ce in keep.case_links) and keep.pseudonym is None:
        keep.pseudonym = _new_pseudonym()
    gone.merged_into_id = keep.id
    keep.updated_at = gone.updated_at = at
    merge = EntityMerge(kept_id=keep.id, absorbed_id=gone.id, case_id=case.id, reason=why,
                        before=before, merged_by_id=actor.user_id, merged_at=at)
    db.session.add(merge)
    db.session.flush()
    db.session.expire(keep, ["case_links", "identifiers"])
    db.session.expire(gone, ["case_links", "identifiers"])
    for eid in (keep.id, gone.id):
        outbox.enqueue("upsert_entity", eid)
    for lk_state in before["links"] + before["folded_into"]:
        outbox.enqueue("upsert_link", lk_state["id"])
    for other in _shielding_neighbours(keep.id):
        outbox.enqueue("upsert_entity", other)
    audit.record(actor=actor, action="entity.merge", object_type="entity", object_id=keep.id,
                 case_id=case.id, details={"merge_id": merge.id, "kept": keep.id,
                                           "absorbed": gone.id, "links": len(links),
                                           "cases": sorted(set(keep.case_ids))})
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("These entities changed while they were being merged; try again.") \
            from None
    outbox.request_drain()
    return merge


def unmerge_entities(*, actor: Actor, merge_id: Any) -> EntityMerge:
    """Undo a merge: both entities exactly as they were before it (identifiers, case
    memberships with their labels, details and roles, links with their counts and
    dates, pseudonyms). Refused when the kept entity has since been merged into
    another (undo that one first). Needs contribute access to every case involved."""
    row_id = _as_id(merge_id)
    merge = db.session.get(EntityMerge, row_id) if row_id is not None else None
    before = merge.before if merge is not None else {}
    involved = {m["case_id"] for m in before.get("absorbed_memberships", [])} | {
        m["case_id"] for m in before.get("kept_memberships", [])} | {
        lk["case_id"] for lk in before.get("links", [])}
    visible = set(policy.readable_case_ids(actor))
    if merge is None or not (involved | {merge.case_id}) & visible:
        audit.record_now(actor=actor, action="entity.unmerge", outcome="denied",
                         object_type="entity_merge", object_id=merge_id)
        raise NotFound("No such merge, or it is not in a case shared with you.")
    if merge.undone_at is not None:
        raise Conflict("This merge has already been undone.")
    keep = db.session.get(Entity, merge.kept_id)
    gone = db.session.get(Entity, merge.absorbed_id)
    if keep.merged_into_id is not None:
        raise Conflict("The kept entity has since been merged into another; undo that "
                       "merge first.")
    _require_contribute(actor, involved)

    at = now()
    # pseudonyms first (unique): clear, then put back
    keep.pseudonym = None
    gone.pseudonym = None
    db.session.flush()
    keep.pseudonym = before["kept_pseudonym"]
    gone.pseudonym = before["absorbed_pseudonym"]
    gone.merged_into_id = None
    for ident_id in before["identifiers"]:
        ident = db.session.get(Identifier, ident_id)
        if ident is not None:
            ident.entity_id = gone.id
    for state in before["kept_memberships"]:
        ce = db.session.get(CaseEntity, state["id"])
        if ce is not None:
            _apply_ce(ce, state)
    db.session.flush()
    for state in before["absorbed_memberships"]:
        ce = db.session.get(CaseEntity, state["id"])
        if ce is None:
            ce = CaseEntity(id=state["id"])
            _apply_ce(ce, state)
            db.session.add(ce)
        else:
            _apply_ce(ce, state)
    db.session.flush()
    for state in before["folded_into"]:
        lk = db.session.get(Link, state["id"])
        if lk is not None:
            _apply_link(lk, state)
    for state in before["links"]:
        lk = db.session.get(Link, state["id"])
        if lk is None:
            lk = Link(id=state["id"])
            _apply_link(lk, state)
            db.session.add(lk)
        else:
            _apply_link(lk, state)
    merge.undone_at, merge.undone_by_id = at, actor.user_id
    keep.updated_at = gone.updated_at = at
    db.session.flush()
    db.session.expire(keep, ["case_links", "identifiers"])
    db.session.expire(gone, ["case_links", "identifiers"])
    for eid in (keep.id, gone.id):
        outbox.enqueue("upsert_entity", eid)
    for lk_state in before["links"] + before["folded_into"]:
        outbox.enqueue("upsert_link", lk_state["id"])
    for other in set(_shielding_neighbours(keep.id)) | set(_shielding_neighbours(gone.id)):
        outbox.enqueue("upsert_entity", other)
    audit.record(actor=actor, action="entity.unmerge", object_type="entity", object_id=gone.id,
                 case_id=merge.case_id, details={"merge_id": merge.id, "kept": keep.id,
                                                 "restored": gone.id})
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("These entities changed since the merge in a way that cannot be "
                       "undone automatically.") from None
    outbox.request_drain()
    return merge


MERGES_MAX = 200


@dataclass
class MergeRecord:
    """One merge as a reader of the case sees it: both entities as nodes
    (schemas.graph_nodes shapes, survivors by pseudonym unless revealed)."""

    merge: EntityMerge
    kept: dict[str, Any]
    absorbed: dict[str, Any]
    merged_by: str | None
    undone_by: str | None
    case_number: str | None
    superseded: bool  # the kept entity has since been merged into another

    @property
    def active(self) -> bool:
        return self.merge.undone_at is None


@dataclass
class CaseMerges:
    case: Case
    items: list[MergeRecord]


def _absorbed_node(actor: Actor, merge: EntityMerge, kept: Entity | None,
                   cases: Mapping[int, Case]) -> dict[str, Any]:
    """The absorbed side of a merge, when it is no entity of its own now. In a merge
    still in force its memberships belong to the kept entity, which carries over its
    survivor role, pseudonym and shielding links: it is named as a readable case had
    entered it only where that case reveals the kept entity; otherwise (and always
    after an undo) by its pseudonym or its kind."""
    before = merge.before or {}
    pseudonym = before.get("absorbed_pseudonym")
    gone = db.session.get(Entity, merge.absorbed_id)
    kind = gone.kind if gone is not None else (kept.kind if kept is not None else "")
    shield = policy.shields([kept.id]).get(kept.id) if kept is not None else None
    label = None
    # undone and since merged away elsewhere: its links are another entity's now
    states = before.get("absorbed_memberships", []) if merge.undone_at is None else []
    for state in states:
        case = cases.get(state["case_id"])
        if case is None or kept is None or kept.in_case(case.id) is None:
            continue
        if pseudonym is not None and not policy.may_see_survivor(actor, case):
            continue
        if policy.reveals_in(actor, kept, case, shield):
            label = state.get("label") or ENTITY_KINDS.get(kind, kind)
            break
    return {"id": merge.absorbed_id, "kind": kind,
            "label": label or pseudonym or ENTITY_KINDS.get(kind, kind),
            "survivor": pseudonym is not None, "minor": False, "redacted": label is None,
            "role": None, "cases": []}


def case_merges(*, actor: Actor, case_id: Any) -> CaseMerges:
    """The merges that shaped this case's network, newest first: those made in this
    case, and those made in another case the reader may read on an entity this case
    holds. A merge made in a case the reader may not read is not listed (it would tell
    them that case exists). Both entities shown through the redacting serializers.
    Needs read access; audited like the other reads."""
    from taskforce.accounts.models import User

    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="entity.merges")
    readable = policy.readable_case_ids(actor)
    held = select(CaseEntity.entity_id).where(CaseEntity.case_id == case.id)
    merges = list(db.session.scalars(
        select(EntityMerge).where(
            EntityMerge.case_id.in_(readable),
            or_(EntityMerge.case_id == case.id, EntityMerge.kept_id.in_(held),
                EntityMerge.absorbed_id.in_(held)))
        .order_by(EntityMerge.merged_at.desc(), EntityMerge.id.desc()).limit(MERGES_MAX)))
    nodes = schemas.graph_nodes({i for m in merges for i in (m.kept_id, m.absorbed_id)},
                                actor=actor, case_ids=readable)
    wanted = {m.case_id for m in merges} | {
        s["case_id"] for m in merges for s in (m.before or {}).get("absorbed_memberships", [])}
    cases = {c.id: c for c in db.session.scalars(
        select(Case).where(Case.id.in_(wanted & set(readable))))} if merges else {}
    user_ids = {u for m in merges for u in (m.merged_by_id, m.undone_by_id) if u is not None}
    names = dict(db.session.execute(select(User.id, User.username)
                                    .where(User.id.in_(user_ids))).all()) if user_ids else {}
    items = []
    for m in merges:
        kept = db.session.get(Entity, m.kept_id)
        absorbed = nodes.get(m.absorbed_id) or _absorbed_node(actor, m, kept, cases)
        kept_node = nodes.get(m.kept_id) or {
            "id": m.kept_id, "kind": kept.kind if kept else "", "survivor": False,
            "label": ENTITY_KINDS.get(kept.kind, "Entity") if kept else "Entity",
            "minor": False, "redacted": True, "role": None, "cases": []}
        items.append(MergeRecord(
            merge=m, kept=kept_node, absorbed=absorbed, merged_by=names.get(m.merged_by_id),
            undone_by=names.get(m.undone_by_id),
            case_number=cases[m.case_id].number if m.case_id in cases else None,
            superseded=kept is not None and kept.merged_into_id is not None))
    audit.record(actor=actor, action="entity.merges", object_type="case", object_id=case.id,
                 case_id=case.id, details={"returned": len(items)})
    db.session.commit()
    return CaseMerges(case=case, items=items)


def case_numbers(*, actor: Actor, case_ids: Iterable[int]) -> dict[int, str]:
    """Case id -> number, for the cases among these the actor may read (the pages name
    the cases an entity is in; nothing else is read)."""
    ids = {int(c) for c in case_ids}
    if not ids:
        return {}
    return dict(db.session.execute(select(Case.id, Case.number).where(
        Case.id.in_(ids), Case.id.in_(policy.visible_case_ids(actor)))).all())


# Exports ------------------------------------------------------------------------------------

@dataclass
class Export:
    filename: str
    mimetype: str
    body: str


def export_case(*, actor: Actor, case_id: Any, fmt: Any) -> Export:
    """A case's network as a file (exports.FORMATS: FollowTheMoney JSON lines, i2 nodes
    and links CSV, GraphML), made from what this reader sees of the case (the same
    redacting serializer as the page and the API), read from the database so an
    export never depends on the graph engine. Audited with the format and the counts."""
    from taskforce.graph import exports

    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="case.export")
    if fmt not in exports.FORMATS:
        raise Invalid("Unknown export format.",
                      fields={"format": "One of: " + ", ".join(exports.FORMATS) + "."})
    entities, links = _case_entities(case), _case_links(case)
    network = schemas.network_out(case, entities, links, actor=actor)
    mimetype, write = exports.FORMATS[fmt]
    body = write(network)
    audit.record(actor=actor, action="case.export", object_type="case", object_id=case.id,
                 case_id=case.id, details={"format": fmt, "entities": len(entities),
                                           "links": len(links),
                                           "revealed": policy.may_see_survivor(actor, case)})
    db.session.commit()
    safe_number = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in case.number)
    return Export(filename=f"{safe_number}-{fmt}", mimetype=mimetype, body=body)
