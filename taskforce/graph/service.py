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
from taskforce.errors import Conflict, NotFound
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
    SURVIVOR_ROLE,
    CaseEntity,
    Entity,
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
        entity = Entity(kind=kind, label=label[:LABEL_MAX], props=details,
                        created_by_id=actor.user_id, created_at=at, updated_at=at)
        db.session.add(entity)
        changed = True
    else:
        entity = existing
        missing = {k: v for k, v in details.items() if k not in (entity.props or {})}
        if missing:  # fill in what was not known; never overwrite what another case entered
            entity.props = {**(entity.props or {}), **missing}
            changed = True
    known = {(i.kind, i.value) for i in entity.identifiers} if existing is not None else set()
    added_identifiers = [i for i in found if i.key not in known]
    for ident in added_identifiers:
        entity.identifiers.append(Identifier(kind=ident.kind, value=ident.value,
                                             display=ident.display or ident.value,
                                             created_by_id=actor.user_id, created_at=at))
        changed = True
    db.session.flush()

    membership = _case_entity(case.id, entity.id)
    attached = membership is None
    if membership is None:
        membership = CaseEntity(case_id=case.id, entity_id=entity.id, role=role,
                                added_by_id=actor.user_id, added_at=at)
        db.session.add(membership)
        changed = True
    elif role and membership.role != role:
        membership.role = role
        changed = True
    if membership.role == SURVIVOR_ROLE and entity.pseudonym is None:
        entity.pseudonym = _new_pseudonym()
        changed = True
    if changed:
        entity.updated_at = at
        case.updated_at = at
    db.session.flush()
    db.session.expire(entity, ["case_links"])
    if changed:
        outbox.enqueue("upsert_entity", entity.id)
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
                          "revealed": policy.reveals(actor, entity, cases)})
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

def _link_summary(link: Link, actor: Actor, case: Case) -> str:
    src = schemas.entity_label(link.source, actor=actor, case=case)
    tgt = schemas.entity_label(link.target, actor=actor, case=case)
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
    for link in db.session.scalars(select(Link).where(Link.case_id == case.id,
                                                      Link.first_seen.is_not(None)
                                                      | Link.last_seen.is_not(None))):
        summary = _link_summary(link, actor, case)
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
