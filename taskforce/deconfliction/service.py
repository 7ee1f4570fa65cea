"""Deconfliction service: the only place that changes the target index, hits and
notifications.

Plain functions with keyword-only arguments and the actor passed in. Writes are
validated before anything is written, audited in the same transaction, and
committed once. Mail and background checks leave only after the commit (an
`after_commit` hook on the session, so a caller that registers inside its own
transaction, as the graph service does, gets them after *its* commit, and
nothing at all if it rolls back).

Registering (`register`)
    Needs contribute (WRITE) access to the case. Identifiers are normalized
    (graph.identifiers.normalize) and stored once per case, kind and value; entering
    one again renews it. Each new one is checked at once against every live
    registration of every *other case*, of any agency: exact (index seek on the
    key's 64-bit prefix, then the full key compared), possible people (blocking keys,
    then scoring), and, after the commit, second-degree through Neo4j (matching.py).
    Another case of the same agency IS a hit: two squads of one department working
    the same trafficker without knowing it is the commonest conflict of all, and the
    hit tells each only whom to call, as across agencies. The same case never hits
    itself. `register_many` does the same for an import's identifiers at once
    (bulk.py: COPY on PostgreSQL).

Hits
    One per pair of registrations, ever (`pair_key`), numbered DC-<year>-<6 digits>.
    A second-degree hit is not made for two cases that already share an unresolved
    hit: they are already talking. Workflow: new -> acknowledged -> coordinating ->
    resolved (resolve is also allowed straight from acknowledged); each side's
    acknowledgement is kept on its own. Anything else is a Conflict (409); a bad
    resolution is Invalid (422).

Notifications
    On a new hit both points of contact (when they are users) and every active
    coordinator get an in-app Notification, in the hit's own transaction, and one
    email per address for all the hits of that commit, queued in the mail outbox in
    the same transaction (mail.queue, from a before_commit hook) and sent after the
    commit. The email holds only the deconfliction number(s) and a link: no
    identifier, agency or case.

Expiry
    A registration lives DECONFLICTION_TTL_DAYS (default 730, two years) from its
    registration or last renewal. Expired registrations never match (every lookup
    asks expires_at > now) and `purge_expired` deletes them with their blocks.
"""
from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import delete, event, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from taskforce.accounts.models import User, UserRole, utcnow
from taskforce.accounts.permissions import Actor
from taskforce.audit import service as audit
from taskforce.deconfliction import blind, bulk, matching, policy
from taskforce.deconfliction.models import (
    RESOLUTIONS,
    Hit,
    HitEvent,
    HitNumberSequence,
    Notification,
    PersonBlock,
    TargetRegistration,
)
from taskforce.errors import Conflict, Forbidden, NotFound
from taskforce.extensions import db
from taskforce.graph import identifiers as idents
from taskforce.investigations import policy as case_policy
from taskforce.investigations.models import Case
from taskforce.investigations.service import WRITE, get_case_or_404
from taskforce.validation import FieldErrors as _Errors
from taskforce.validation import as_id as _as_id

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TTL_DAYS",
    "acknowledge",
    "check_only",
    "get_hit",
    "list_hits",
    "list_notifications",
    "mark_notifications_read",
    "purge_expired",
    "register",
    "register_many",
    "renew",
    "resolve",
    "second_degree_check",
    "start_coordinating",
]

DEFAULT_TTL_DAYS = 730
TTL_MAX_DAYS = 3650
IDENTIFIERS_MAX = 5000
BULK_IDENTIFIERS_MAX = 10_000_000  # register_many (imports): what one transaction may hold
BULK_CHUNK = 50_000  # rows per bulk.load
NOTE_MAX = 2000
POC_NAME_MAX = 200
PER_PAGE_MAX = 200
NOTIFICATIONS_SHOWN = 20
_PENDING = "deconfliction_after_commit"  # Session.info key: work to send after the commit

_HIT_NOT_FOUND = "No such hit, or it does not concern you."
_REG_NOT_FOUND = "No such registration, or it is not in a case you may change."
_EXTRA_KEYS = ("dob", "state", "platform", "routing", "chain", "region")


def now() -> datetime:
    """The clock every function here reads (tests replace it)."""
    return utcnow()


def ttl_days() -> int:
    raw = current_app.config.get("DECONFLICTION_TTL_DAYS") or DEFAULT_TTL_DAYS
    return max(1, min(int(raw), TTL_MAX_DAYS))


# --------------------------------------------------------------------------- input

def _parse_identifiers(errors: _Errors, raw: Any, *, limit: int = IDENTIFIERS_MAX
                       ) -> list[idents.Identifier]:
    """Normalize (kind, value) pairs, dicts ({kind, value, dob, state, ...}) or
    Identifiers; errors name `identifiers.<i>`. Duplicates are kept once."""
    if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Iterable):
        errors.add("identifiers", "Give a list of identifiers.")
        return []
    items = list(raw)
    if not items:
        errors.add("identifiers", "Give at least one identifier.")
        return []
    if len(items) > limit:
        errors.add("identifiers", f"At most {limit} identifiers at a time.")
        return []
    out: dict[tuple[str, str], idents.Identifier] = {}
    for i, item in enumerate(items):
        extra: dict[str, Any] = {}
        if isinstance(item, idents.Identifier):
            # Already normalized (the graph service's): taken as it is, since an import
            # may have accepted a merely possible phone number (strict=False).
            if item.kind not in idents.KINDS or not item.value:
                errors.add(f"identifiers.{i}", "Not a normalized identifier.")
            elif item.kind == "person" and not _person_value_ok(item.value):
                errors.add(f"identifiers.{i}.value", "A person needs a name and a date of birth.")
            else:
                out.setdefault(item.key, item)
            continue
        if isinstance(item, Mapping):
            kind, value = item.get("kind"), item.get("value")
            extra = {k: item[k] for k in _EXTRA_KEYS if item.get(k) not in (None, "")}
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            kind, value = item
        else:
            errors.add(f"identifiers.{i}", "Each identifier is a kind and a value.")
            continue
        if not isinstance(kind, str) or not kind.strip():
            errors.add(f"identifiers.{i}.kind", "Required.")
            continue
        if not isinstance(value, str) and not isinstance(value, int):
            errors.add(f"identifiers.{i}.value", "Required.")
            continue
        region = extra.pop("region", "US")
        try:
            ident = idents.normalize(kind.strip().lower(), str(value), region=region, **extra)
        except idents.InvalidIdentifier as exc:
            field_name = "kind" if "unknown identifier kind" in exc.reason else "value"
            errors.add(f"identifiers.{i}.{field_name}", exc.reason)
            continue
        out.setdefault(ident.key, ident)
    return list(out.values())


def _person_value_ok(value: str) -> bool:
    try:
        tokens, _ = matching.person_parts(value)
    except ValueError:
        return False
    return bool(tokens) and all(tokens)


def _text(errors: _Errors, name: str, value: Any, max_len: int) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str):
        errors.add(name, "Must be text.")
        return ""
    value = value.strip()
    if len(value) > max_len:
        errors.add(name, f"At most {max_len} characters.")
    return value


def _poc(errors: _Errors, case: Case, raw: Any) -> dict[str, Any]:
    """The point of contact: given, or a user's (by user_id), or the case's lead investigator."""
    if raw in (None, {}):
        lead = case.lead_investigator
        return {"user_id": lead.id, "name": lead.full_name, "phone": "", "email": lead.email}
    if not isinstance(raw, Mapping):
        errors.add("poc", "Give name, phone and email (or a user_id).")
        return {}
    poc: dict[str, Any] = {"user_id": None, "name": "", "phone": "", "email": ""}
    if raw.get("user_id") not in (None, ""):
        uid = _as_id(raw.get("user_id"))
        user = db.session.get(User, uid) if uid is not None else None
        if user is None or not user.active:
            errors.add("poc.user_id", "No such active user.")
        else:
            poc.update(user_id=user.id, name=user.full_name, email=user.email)
    name = _text(errors, "poc.name", raw.get("name"), POC_NAME_MAX)
    phone = _text(errors, "poc.phone", raw.get("phone"), 60)
    email = _text(errors, "poc.email", raw.get("email"), 254)
    if name:
        poc["name"] = name
    if phone:
        try:
            poc["phone"] = idents.normalize("phone", phone, strict=False).display
        except idents.InvalidIdentifier as exc:
            errors.add("poc.phone", exc.reason)
    if email:
        try:
            poc["email"] = idents.normalize("email", email).details["as_written"]
        except idents.InvalidIdentifier as exc:
            errors.add("poc.email", exc.reason)
    if not poc["name"]:
        errors.add("poc.name", "Required (or give a user_id).")
    if not poc["phone"] and not poc["email"]:
        errors.add("poc", "Give at least a phone or an email to be reached at.")
    return poc


# --------------------------------------------------------------------------- registering

@dataclass
class RegisterResult:
    registrations: list[TargetRegistration]
    created: int
    renewed: int
    hits: list[Hit]


def register(*, actor: Actor, case_id: Any, identifiers: Any, entity_id: Any = None,
             poc: Any = None, commit: bool = True) -> RegisterResult:
    """Register a case's identifiers in the cross-agency index and check them.

    `commit=False` leaves the commit to the caller (the graph service registers
    an entity's identifiers inside its own transaction); mail and the
    second-degree check then go out after that commit, or not at all.
    """
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE,
                           attempt="deconfliction.register")
    if case.status == "closed":
        raise Conflict("This case is closed; reopen it before registering identifiers.")
    if isinstance(identifiers, (list, tuple)) and not identifiers:
        return RegisterResult(registrations=[], created=0, renewed=0, hits=[])  # nothing to do
    errors = _Errors()
    found = _parse_identifiers(errors, identifiers)
    eid = None
    if entity_id not in (None, ""):
        eid = _as_id(entity_id)
        if eid is None:
            errors.add("entity_id", "Must be a whole number, 1 or more.")
        else:
            from taskforce.graph.models import CaseEntity

            in_case = db.session.scalar(select(CaseEntity.id).where(
                CaseEntity.case_id == case.id, CaseEntity.entity_id == eid))
            if in_case is None:
                errors.add("entity_id", "Must be an entity of this case.")
    contact = _poc(errors, case, poc)
    errors.raise_if_any()

    ring = blind.keyring()
    at = now()
    expires = at + timedelta(days=ttl_days())
    keys = {ident.key: ring.value_key(ident.kind, ident.value) for ident in found}
    key64s = {ident.key: ring.key64(ident.kind, keys[ident.key]) for ident in found}
    existing: dict[tuple[str, str], TargetRegistration] = {}
    # slots taken per key64 in this case (values of any kind or scheme sharing it)
    slots: Counter[int] = Counter()
    for chunk in matching._chunks(sorted(set(key64s.values()))):
        # FOR SHARE: a purge cannot delete one of them (leaving a gap in the slots)
        for reg in db.session.scalars(select(TargetRegistration).where(
                TargetRegistration.case_id == case.id,
                TargetRegistration.key64.in_(chunk))
                .with_for_update(read=True, of=TargetRegistration)):
            slots[reg.key64] += 1
            if reg.scheme == ring.scheme:
                existing[(reg.kind, reg.value_key)] = reg

    registrations: list[TargetRegistration] = []
    to_check: list[tuple[idents.Identifier, TargetRegistration]] = []
    created = renewed = 0
    for ident in found:
        vk = keys[ident.key]
        reg = existing.get((ident.kind, vk))
        if reg is None:
            k64 = key64s[ident.key]
            reg = TargetRegistration(
                kind=ident.kind, value_key=vk, key64=k64, key_slot=slots[k64],
                scheme=ring.scheme,
                display_hint=None if ring.blind else (ident.display or ident.value)[:512],
                agency_id=case.agency_id, case_id=case.id, entity_id=eid,
                poc_user_id=contact["user_id"], poc_name=contact["name"],
                poc_phone=contact["phone"], poc_email=contact["email"],
                registered_by_id=actor.user_id, registered_at=at, expires_at=expires)
            if ident.kind == "person":
                tokens, dob = matching.person_parts(ident.value)
                if ring.blind:
                    reg.sketch = matching.person_sketch(tokens, dob, ring)
                reg.blocks = [PersonBlock(block_key=k)
                              for k in sorted(matching.person_block_keys(tokens, dob, ring))]
            db.session.add(reg)
            existing[(ident.kind, vk)] = reg
            slots[k64] += 1
            created += 1
            to_check.append((ident, reg))
        else:
            was_live = reg.live_at(at)
            reg.expires_at = max(reg.expires_at, expires)
            reg.renewed_at = at
            if reg.entity_id is None and eid is not None:
                reg.entity_id = eid
            renewed += 1
            if not was_live:  # back from expiry: it may meet what came meanwhile
                to_check.append((ident, reg))
        registrations.append(reg)
    db.session.flush()

    probes = [matching.make_probe(ident, ring, registration_id=reg.id, case_id=case.id,
                                  entity_id=reg.entity_id) for ident, reg in to_check]
    matches = matching.find(probes, ring=ring, now=at, exclude_case_id=case.id)
    regs_by_id = {reg.id: reg for reg in registrations}
    hits = _create_hits(actor, matches, regs_by_id, at=at)
    audit.record(actor=actor, action="deconfliction.register", object_type="case",
                 object_id=case.id, case_id=case.id,
                 details={"identifier_kinds": dict(Counter(i.kind for i in found)),
                          "created": created, "renewed": renewed,
                          "entity_id": eid, "hits": [h.number for h in hits]})
    if probes and matching.graph_configured():
        _pending(db.session()).setdefault("second_degree", []).extend(
            reg.id for _, reg in to_check if reg.entity_id is not None)
    if commit:
        _commit()
    return RegisterResult(registrations=registrations, created=created, renewed=renewed,
                          hits=hits)


@dataclass
class BulkRegisterResult:
    """register_many's outcome: one registration id per identifier (in the order of
    `checked`), how many were new and renewed, and the hits made."""

    checked: list[idents.Identifier]
    registration_ids: list[int]
    created: int
    renewed: int
    hits: list[Hit]


def register_many(*, actor: Actor, case_id: Any, identifiers: Any,
                  entity_ids: Mapping[tuple[str, str], int] | None = None, poc: Any = None,
                  commit: bool = True, second_degree: bool = True) -> BulkRegisterResult:
    """What `register` does, for up to BULK_IDENTIFIERS_MAX identifiers of one case at
    once (an import's): rows written in bulk (bulk.py: COPY on PostgreSQL), the new
    ones (and those back from expiry) checked for exact and possible matches a batch
    of keys per query, one audit record.

    `entity_ids` names the entity of each identifier, by its normalized key
    (Identifier.key); each must be in the case. With `second_degree` the entities'
    registrations are queued for the second-degree check after the commit (an
    import passes False: it asks for its entities' check itself).
    """
    case = get_case_or_404(actor=actor, case_id=case_id, action=WRITE,
                           attempt="deconfliction.register")
    if case.status == "closed":
        raise Conflict("This case is closed; reopen it before registering identifiers.")
    if isinstance(identifiers, (list, tuple)) and not identifiers:
        return BulkRegisterResult(checked=[], registration_ids=[], created=0, renewed=0,
                                  hits=[])
    errors = _Errors()
    found = _parse_identifiers(errors, identifiers, limit=BULK_IDENTIFIERS_MAX)
    entity_of = _case_entities(errors, case, entity_ids or {}, found)
    contact = _poc(errors, case, poc)
    errors.raise_if_any()

    ring = blind.keyring()
    at = now()
    stamp = bulk.Stamp(registered_at=at, expires_at=at + timedelta(days=ttl_days()),
                       registered_by_id=actor.user_id)
    who = bulk.Contact(user_id=contact["user_id"], name=contact["name"],
                       phone=contact["phone"], email=contact["email"])
    db.session.flush()  # the caller's pending rows first: the load runs on the same connection
    conn = db.session.connection()
    ids: list[int] = []
    probes: list[matching.Probe] = []
    created = 0
    for start in range(0, len(found), BULK_CHUNK):
        chunk = found[start:start + BULK_CHUNK]
        prepared = bulk.prepare([bulk.Entry(
            kind=i.kind, value=i.value, case_id=case.id, agency_id=case.agency_id,
            contact=who, entity_id=entity_of.get(i.key), display=i.display or i.value)
            for i in chunk], ring, stamp)
        loaded = bulk.load(conn, prepared, stamp)
        created += loaded.n_created
        for ident, row in zip(chunk, prepared.row_of, strict=True):
            ids.append(loaded.ids[row])
            if loaded.check[row]:
                probes.append(matching.make_probe(
                    ident, ring, registration_id=loaded.ids[row], case_id=case.id,
                    entity_id=entity_of.get(ident.key)))
    for obj in list(db.session.identity_map.values()):  # renewed behind the ORM's back
        if isinstance(obj, TargetRegistration):
            db.session.expire(obj)

    matches = matching.find(probes, ring=ring, now=at, exclude_case_id=case.id)
    hits = _create_hits(actor, matches, {}, at=at)
    audit.record(actor=actor, action="deconfliction.register", object_type="case",
                 object_id=case.id, case_id=case.id,
                 details={"identifier_kinds": dict(Counter(i.kind for i in found)),
                          "created": created, "renewed": len(found) - created, "bulk": True,
                          "entities": len(set(entity_of.values())),
                          "hits": [h.number for h in hits]})
    if second_degree and probes and matching.graph_configured():
        _pending(db.session()).setdefault("second_degree", []).extend(
            p.registration_id for p in probes if p.entity_id is not None)
    if commit:
        _commit()
    return BulkRegisterResult(checked=found, registration_ids=ids, created=created,
                              renewed=len(found) - created, hits=hits)


def _case_entities(errors: _Errors, case: Case, entity_ids: Mapping[tuple[str, str], int],
                   found: Sequence[idents.Identifier]) -> dict[tuple[str, str], int]:
    """The entity of each identifier (by key), each checked to be in the case."""
    from taskforce.graph.models import CaseEntity

    wanted: dict[tuple[str, str], int] = {}
    for ident in found:
        eid = entity_ids.get(ident.key)
        if eid is None:
            continue
        row_id = _as_id(eid)
        if row_id is None:
            errors.add("entity_ids", "Each entity id must be a whole number, 1 or more.")
            return {}
        wanted[ident.key] = row_id
    ids = sorted(set(wanted.values()))
    in_case: set[int] = set()
    for chunk in matching._chunks(ids):
        in_case.update(db.session.scalars(select(CaseEntity.entity_id).where(
            CaseEntity.case_id == case.id, CaseEntity.entity_id.in_(chunk))))
    if set(ids) - in_case:
        errors.add("entity_ids", "Each must be an entity of this case.")
    return wanted


def _commit() -> None:
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("Someone registered the same identifiers at the same moment; "
                       "try again.") from None


# --------------------------------------------------------------------------- hits

def _next_number(year: int) -> str:
    """DC-<year>-<6 digits>, from an atomic upsert (see investigations._next_sequence)."""
    table = HitNumberSequence.__table__
    dialect = db.session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table).values(year=year, last_value=1).on_conflict_do_update(
            index_elements=[table.c.year], set_={"last_value": table.c.last_value + 1},
        ).returning(table.c.last_value)
        value = int(db.session.execute(stmt).scalar_one())
    else:  # pragma: no cover  (other databases)
        row = db.session.get(HitNumberSequence, year, with_for_update=True)
        if row is None:
            row = HitNumberSequence(year=year, last_value=0)
            db.session.add(row)
        row.last_value += 1
        db.session.flush()
        value = row.last_value
    return f"DC-{year}-{value:06d}"


def _pair_key(a: int, b: int) -> str:
    return f"{min(a, b)}:{max(a, b)}"


def _side_values(prefix: str, reg: TargetRegistration) -> dict[str, Any]:
    return {f"{prefix}_registration_id": reg.id, f"{prefix}_agency_id": reg.agency_id,
            f"{prefix}_case_id": reg.case_id, f"{prefix}_identifier_kind": reg.kind,
            f"{prefix}_poc_user_id": reg.poc_user_id, f"{prefix}_poc_name": reg.poc_name,
            f"{prefix}_poc_phone": reg.poc_phone or "", f"{prefix}_poc_email": reg.poc_email or ""}


def _create_hits(actor: Actor, matches: Sequence[matching.Match],
                 regs_by_id: Mapping[int, TargetRegistration], *, at: datetime) -> list[Hit]:
    """Hits for new pairs, with their first event and their notifications (no commit)."""
    if not matches:
        return []
    wanted: dict[str, matching.Match] = {}
    for m in matches:
        a_id = m.probe.registration_id
        if a_id is None or a_id == m.other.id:
            continue
        key = _pair_key(a_id, m.other.id)
        cur = wanted.get(key)
        if cur is None or (matching.KIND_RANK[m.kind], m.score) > (
                matching.KIND_RANK[cur.kind], cur.score):
            wanted[key] = m
    taken: set[str] = set()
    for chunk in matching._chunks(sorted(wanted)):
        taken |= set(db.session.scalars(select(Hit.pair_key).where(Hit.pair_key.in_(chunk))))
    hits: list[Hit] = []
    for key in sorted(wanted):
        if key in taken:
            continue
        m = wanted[key]
        mine = regs_by_id.get(m.probe.registration_id) or db.session.get(
            TargetRegistration, m.probe.registration_id)
        if m.kind == "second_degree" and _cases_already_talking(mine.case_id, m.other.case_id):
            continue
        hit = Hit(number=_next_number(at.year), pair_key=key, kind=m.kind,
                  score=max(0.0, min(1.0, float(m.score))), status="new", created_at=at,
                  updated_at=at, **_side_values("a", mine), **_side_values("b", m.other))
        hit.events.append(HitEvent(at=at, user_id=actor.user_id, agency_id=actor.agency_id,
                                   action="created", to_status="new"))
        db.session.add(hit)
        hits.append(hit)
    if not hits:
        return []
    db.session.flush()
    _notify(hits, at=at)
    return hits


def _cases_already_talking(case_a: int, case_b: int) -> bool:
    return db.session.scalar(select(Hit.id).where(
        Hit.status != "resolved",
        or_((Hit.a_case_id == case_a) & (Hit.b_case_id == case_b),
            (Hit.a_case_id == case_b) & (Hit.b_case_id == case_a))).limit(1)) is not None


# --------------------------------------------------------------------------- notifications

def _coordinators() -> list[User]:
    return list(db.session.scalars(
        select(User).join(UserRole, UserRole.user_id == User.id)
        .where(UserRole.role == policy.COORDINATOR, User.active.is_(True))
        .order_by(User.id)).unique())


def _notify(hits: Sequence[Hit], *, at: datetime,
            also: Mapping[int, Iterable[int]] | None = None) -> None:
    """In-app notifications now (same transaction); mail queued for after the commit.
    `also` names more users per hit id (an operation's planner besides its contact)."""
    coordinators = _coordinators()
    extra_ids = {uid for uids in (also or {}).values() for uid in uids}
    extra = {u.id: u for u in db.session.scalars(select(User).where(
        User.id.in_(sorted(extra_ids)), User.active.is_(True)))} if extra_ids else {}
    mails: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for hit in hits:
        users: dict[int, None] = {}
        emails: dict[str, None] = {}
        for side in ("a", "b"):
            uid = getattr(hit, f"{side}_poc_user_id")
            if uid is not None:
                users[uid] = None
            email = getattr(hit, f"{side}_poc_email")
            if email:
                emails[email.lower()] = None
        for user in [*coordinators, *(extra[u] for u in (also or {}).get(hit.id, ())
                                      if u in extra)]:
            users[user.id] = None
            if user.email:
                emails[user.email.lower()] = None
        for uid in users:
            db.session.add(Notification(user_id=uid, kind="hit.new", hit_id=hit.id,
                                        created_at=at))
        for email in emails:
            mails[email].append((hit.number, hit.id))
    pending = _pending(db.session())
    for email, items in mails.items():
        pending.setdefault("mails", {}).setdefault(email, []).extend(items)


def hit_url(hit_id: int) -> str:
    base = (current_app.config.get("BASE_URL") or "http://localhost:5000").rstrip("/")
    return f"{base}/deconfliction/hits/{hit_id}"


def hit_email(items: Sequence[tuple[str, int]]) -> tuple[str, str]:
    """(subject, body) of the notice: deconfliction numbers and links, nothing else."""
    if len(items) == 1:
        number, hit_id = items[0]
        subject = f"Deconfliction hit {number}"
        lines = [f"A new deconfliction hit, {number}, concerns you.", "",
                 "Sign in to see whom to contact and to acknowledge it:", hit_url(hit_id)]
    else:
        subject = f"{len(items)} new deconfliction hits"
        lines = [(f"{len(items)} new deconfliction hits concern you. Sign in to see whom to "
                  "contact and to acknowledge them:"), ""]
        lines += [f"{number}: {hit_url(hit_id)}" for number, hit_id in items]
    lines += ["", "This message holds no case details, by design."]
    return subject, "\n".join(lines) + "\n"


def _pending(session: Session) -> dict[str, Any]:
    return session.info.setdefault(_PENDING, {})


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    """The hit notices into the mail outbox, in the hits' own transaction: one email per
    address for every hit of the commit, existing if and only if the hits commit."""
    if session.in_nested_transaction():  # a savepoint: the outer commit queues them
        return
    pending = session.info.get(_PENDING)
    mails = pending.pop("mails", None) if pending else None
    if not mails:
        return
    from taskforce import mail

    for email, items in sorted(mails.items()):
        subject, body = hit_email(items)
        mail.queue([email], subject, body, about="deconfliction_hit")


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending and has_app_context():
        _dispatch(pending)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _dispatch(pending: dict[str, Any]) -> None:
    """The second-degree check, after the commit (the mail is in the outbox, committed
    with the hits). Never raises: what is committed stays committed."""
    from taskforce.deconfliction import tasks
    from taskforce.jobs import dispatch

    reg_ids = sorted(set(pending.get("second_degree") or []))
    if reg_ids:
        try:
            dispatch(tasks.second_degree_check, (reg_ids,))
        except Exception:
            log.exception("deconfliction: could not start the second-degree check")


# --------------------------------------------------------------------------- second degree

def second_degree_check(*, registration_ids: Sequence[int], actor: Actor | None = None
                        ) -> list[Hit]:
    """Second-degree hits for these registrations (run after their commit, by a task)."""
    actor = actor or Actor.system("deconfliction")
    ring = blind.keyring()
    at = now()
    regs = list(db.session.scalars(select(TargetRegistration).where(
        TargetRegistration.id.in_(list(registration_ids)),
        TargetRegistration.scheme == ring.scheme, TargetRegistration.expires_at > at)))
    probes = [matching.Probe(kind=r.kind, value_key=r.value_key, registration_id=r.id,
                             case_id=r.case_id, entity_id=r.entity_id, key64=r.key64)
              for r in regs]
    matches = matching.second_degree(probes, ring=ring, now=at)
    hits = _create_hits(actor, matches, {r.id: r for r in regs}, at=at)
    if hits:
        audit.record(actor=actor, action="deconfliction.second_degree", object_type="hit",
                     details={"registrations": len(regs), "hits": [h.number for h in hits]})
    db.session.commit()
    return hits


def second_degree_for_entities(*, entity_ids: Sequence[int]) -> list[Hit]:
    """The same, for every live registration of these entities (after their links
    changed), and of the entities merged into them (registrations keep naming those)."""
    named = sorted({a for absorbed in matching.absorbed_into(entity_ids).values()
                    for a in absorbed})
    ids: list[int] = []
    for chunk in matching._chunks(named):
        ids += db.session.scalars(select(TargetRegistration.id).where(
            TargetRegistration.entity_id.in_(chunk), TargetRegistration.expires_at > now()))
    return second_degree_check(registration_ids=ids) if ids else []


# --------------------------------------------------------------------------- check only

@dataclass
class CheckResult:
    checked: list[idents.Identifier]
    matches: list[matching.Match]
    checked_at: datetime


def check_only(*, actor: Actor, identifiers: Any) -> CheckResult:
    """"Check before I open a case": what the identifiers would hit, registering
    nothing and telling nobody else. Audited (kinds and counts, never the values)."""
    if not policy.can_check(actor):
        raise Forbidden("Your role does not allow deconfliction checks.")
    errors = _Errors()
    found = _parse_identifiers(errors, identifiers)
    errors.raise_if_any()
    ring = blind.keyring()
    at = now()
    probes = [matching.make_probe(ident, ring) for ident in found]
    matches = matching.find(probes, ring=ring, now=at)
    matches.sort(key=lambda m: (-matching.KIND_RANK[m.kind], -m.score, m.other.id))
    audit.record(actor=actor, action="deconfliction.check", object_type="deconfliction",
                 details={"identifier_kinds": dict(Counter(i.kind for i in found)),
                          "matches": len(matches)})
    db.session.commit()
    return CheckResult(checked=found, matches=matches, checked_at=at)


# --------------------------------------------------------------------------- reading hits

@dataclass
class HitView:
    """A hit as one actor may see it: which sides are theirs, what they may do, and
    the identifier they entered on their own side (None when not shown)."""

    hit: Hit
    own_sides: tuple[str, ...]
    actions: tuple[str, ...]
    displays: dict[str, str | None] = field(default_factory=dict)
    events: list[HitEvent] = field(default_factory=list)


@dataclass
class HitList:
    items: list[HitView]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def available_actions(actor: Actor, hit: Hit) -> tuple[str, ...]:
    if not policy.can_act(actor, hit):
        return ()
    if hit.status == "new":
        return ("acknowledge",)
    if hit.status == "acknowledged":
        pending = [s for s in policy.acting_sides(actor, hit)
                   if getattr(hit, f"{s}_acknowledged_at") is None]
        return (("acknowledge",) if pending else ()) + ("coordinate", "resolve")
    if hit.status == "coordinating":
        pending = [s for s in policy.acting_sides(actor, hit)
                   if getattr(hit, f"{s}_acknowledged_at") is None]
        return (("acknowledge",) if pending else ()) + ("resolve",)
    return ()


def own_identifier_display(reg_id: int | None) -> str | None:
    """The identifier as its own case entered it: the stored hint, or (blind) the
    graph's identifier of the registration's entity whose index key matches."""
    if reg_id is None:
        return None
    reg = db.session.get(TargetRegistration, reg_id)
    if reg is None:
        return None
    if reg.display_hint:
        return reg.display_hint
    if reg.entity_id is None:
        return None
    from taskforce.graph.models import Identifier as GraphIdentifier

    ring = blind.keyring()
    # a merge moved the identifiers of the entity the registration names to the kept one
    entity_id = matching.resolve_merged([reg.entity_id])[reg.entity_id]
    for ident in db.session.scalars(select(GraphIdentifier).where(
            GraphIdentifier.entity_id == entity_id, GraphIdentifier.kind == reg.kind)):
        if ring.value_key(ident.kind, ident.value) == reg.value_key:
            return ident.display or ident.value
    return None


def _view(actor: Actor, hit: Hit, *, with_events: bool = False) -> HitView:
    own = policy.own_sides(actor, hit)
    displays = {s: own_identifier_display(getattr(hit, f"{s}_registration_id")) for s in own}
    return HitView(hit=hit, own_sides=own, actions=available_actions(actor, hit),
                   displays=displays, events=list(hit.events) if with_events else [])


def hit_views(*, actor: Actor, hits: Iterable[Hit]) -> list[HitView]:
    """Hits the service just made or moved, as this actor sees them (no read audit:
    the change that produced them was audited)."""
    return [_view(actor, h) for h in hits if policy.can_view(actor, h)]


def list_hits(*, actor: Actor, status: Any = None, page: Any = 1,
              per_page: Any = 50) -> HitList:
    """The hits the actor may see (coordinators: all), newest first."""
    errors = _Errors()
    status = errors.choice("status", status or None,
                           ("open", "new", "acknowledged", "coordinating", "resolved"),
                           required=False)
    page_n = errors.integer("page", page, required=False) or 1
    per_page_n = errors.integer("per_page", per_page, required=False) or 50
    if not 1 <= per_page_n <= PER_PAGE_MAX:
        errors.add("per_page", f"Must be between 1 and {PER_PAGE_MAX}.")
    errors.raise_if_any()
    query = policy.visible_hits(select(Hit), actor)
    if status == "open":
        query = query.where(Hit.status != "resolved")
    elif status:
        query = query.where(Hit.status == status)
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    hits = list(db.session.scalars(query.order_by(Hit.created_at.desc(), Hit.id.desc())
                                   .limit(per_page_n).offset((page_n - 1) * per_page_n)))
    audit.record(actor=actor, action="deconfliction.hit.list", object_type="hit",
                 details={"status": status, "page": page_n, "returned": [h.id for h in hits]})
    db.session.commit()
    return HitList(items=[_view(actor, h) for h in hits], total=total, page=page_n,
                   per_page=per_page_n)


def _load_hit(actor: Actor, hit_id: Any, *, act: bool, attempt: str) -> Hit:
    row_id = _as_id(hit_id)
    hit = db.session.get(Hit, row_id) if row_id is not None else None
    visible = hit is not None and policy.can_view(actor, hit)
    if visible and (not act or policy.can_act(actor, hit)):
        return hit
    audit.record_now(actor=actor, action=attempt, outcome="denied", object_type="hit",
                     object_id=hit_id)
    if not visible:
        raise NotFound(_HIT_NOT_FOUND)
    raise Forbidden("Only either side's point of contact, members of either case who may "
                    "change it, and coordinators move a hit along.")


def get_hit(*, actor: Actor, hit_id: Any) -> HitView:
    """One hit with its history; the actor's notifications of it are marked read."""
    hit = _load_hit(actor, hit_id, act=False, attempt="deconfliction.hit.read")
    db.session.execute(update(Notification).where(
        Notification.user_id == actor.user_id, Notification.hit_id == hit.id,
        Notification.read_at.is_(None)).values(read_at=now()))
    audit.record(actor=actor, action="deconfliction.hit.read", object_type="hit",
                 object_id=hit.id, details={"number": hit.number})
    db.session.commit()
    return _view(actor, hit, with_events=True)


# --------------------------------------------------------------------------- workflow

def _move(actor: Actor, hit: Hit, *, action: str, to_status: str, note: str = "",
          values: dict[str, Any] | None = None, at: datetime) -> None:
    """Compare-and-set the status (a concurrent move wins, this one gets Conflict)."""
    from_status = hit.status
    result = db.session.execute(
        update(Hit).where(Hit.id == hit.id, Hit.status == from_status)
        .values(status=to_status, updated_at=at, **(values or {}))
        .execution_options(synchronize_session="fetch"))
    if result.rowcount != 1:
        db.session.rollback()
        raise Conflict("Someone moved this hit on meanwhile; reload it.")
    db.session.add(HitEvent(hit_id=hit.id, at=at, user_id=actor.user_id,
                            agency_id=actor.agency_id, action=action,
                            from_status=from_status, to_status=to_status, note=note))
    audit.record(actor=actor, action=f"deconfliction.hit.{action}", object_type="hit",
                 object_id=hit.id, details={"number": hit.number, "from": from_status,
                                            "to": to_status})
    db.session.commit()


def acknowledge(*, actor: Actor, hit_id: Any) -> HitView:
    """A side says it has seen the hit. The first acknowledgement moves a new hit on;
    the other side's is recorded too. A coordinator may acknowledge a new hit."""
    hit = _load_hit(actor, hit_id, act=True, attempt="deconfliction.hit.acknowledge")
    if hit.status == "resolved":
        raise Conflict("This hit is resolved.")
    at = now()
    pending = [s for s in policy.acting_sides(actor, hit)
               if getattr(hit, f"{s}_acknowledged_at") is None]
    values = {f"{s}_acknowledged_at": at for s in pending}
    if hit.status == "new":
        values["acknowledged_at"] = at
        _move(actor, hit, action="acknowledged", to_status="acknowledged", values=values, at=at)
    elif pending:
        _move(actor, hit, action="acknowledged", to_status=hit.status, values=values, at=at)
    else:
        raise Conflict("Already acknowledged.")
    return _view(actor, hit, with_events=True)


def start_coordinating(*, actor: Actor, hit_id: Any) -> HitView:
    hit = _load_hit(actor, hit_id, act=True, attempt="deconfliction.hit.coordinate")
    if hit.status != "acknowledged":
        raise Conflict({"new": "Acknowledge the hit first.",
                        "coordinating": "The sides are already coordinating.",
                        "resolved": "This hit is resolved."}[hit.status])
    _move(actor, hit, action="coordinating", to_status="coordinating", at=now())
    return _view(actor, hit, with_events=True)


def resolve(*, actor: Actor, hit_id: Any, resolution: Any, note: Any = "") -> HitView:
    """Close the hit with how it ended. The note is read by both sides and the
    coordinators: it is no place for case details."""
    hit = _load_hit(actor, hit_id, act=True, attempt="deconfliction.hit.resolve")
    errors = _Errors()
    resolution = errors.choice("resolution", resolution, RESOLUTIONS)
    note = errors.text("note", note, max_len=NOTE_MAX, required=False)
    errors.raise_if_any()
    if hit.status not in ("acknowledged", "coordinating"):
        raise Conflict("This hit is resolved." if hit.status == "resolved"
                       else "Acknowledge the hit first.")
    at = now()
    _move(actor, hit, action="resolved", to_status="resolved", note=note, at=at,
          values={"resolution": resolution, "resolution_note": note, "resolved_at": at})
    return _view(actor, hit, with_events=True)


# --------------------------------------------------------------------------- registrations

def _load_registration(actor: Actor, registration_id: Any) -> TargetRegistration:
    row_id = _as_id(registration_id)
    reg = db.session.get(TargetRegistration, row_id) if row_id is not None else None
    if reg is None:
        audit.record_now(actor=actor, action="deconfliction.renew", outcome="denied",
                         object_type="registration", object_id=registration_id)
        raise NotFound(_REG_NOT_FOUND)
    case = db.session.get(Case, reg.case_id)
    if case_policy.access(actor, case) < WRITE:
        audit.record_now(actor=actor, action="deconfliction.renew", outcome="denied",
                         object_type="registration", object_id=registration_id,
                         case_id=reg.case_id)
        raise NotFound(_REG_NOT_FOUND)
    return reg


def renew(*, actor: Actor, registration_id: Any, days: Any = None,
          poc: Any = None) -> TargetRegistration:
    """Push the expiry out again (default: the full time to live from now), and
    optionally change the point of contact (open hits follow)."""
    reg = _load_registration(actor, registration_id)
    errors = _Errors()
    n_days = ttl_days()
    if days not in (None, ""):
        n = errors.integer("days", days)
        if n is not None and not 1 <= n <= TTL_MAX_DAYS:
            errors.add("days", f"Between 1 and {TTL_MAX_DAYS}.")
        n_days = n or n_days
    contact = _poc(errors, db.session.get(Case, reg.case_id), poc) if poc else None
    errors.raise_if_any()
    at = now()
    reg.expires_at = at + timedelta(days=n_days)
    reg.renewed_at = at
    if contact:
        reg.poc_user_id, reg.poc_name = contact["user_id"], contact["name"]
        reg.poc_phone, reg.poc_email = contact["phone"], contact["email"]
        for side in ("a", "b"):
            db.session.execute(update(Hit).where(
                getattr(Hit, f"{side}_registration_id") == reg.id, Hit.status != "resolved")
                .values(**{f"{side}_poc_user_id": reg.poc_user_id,
                           f"{side}_poc_name": reg.poc_name,
                           f"{side}_poc_phone": reg.poc_phone,
                           f"{side}_poc_email": reg.poc_email}))
    audit.record(actor=actor, action="deconfliction.renew", object_type="registration",
                 object_id=reg.id, case_id=reg.case_id,
                 details={"days": n_days, "poc_changed": bool(contact)})
    db.session.commit()
    return reg


def purge_expired(*, actor: Actor | None = None, batch: int = 5000) -> int:
    """Delete expired registrations and their blocks; hits keep their snapshots."""
    actor = actor or Actor.system("deconfliction")
    at = now()
    total = 0
    while True:
        ids = list(db.session.scalars(select(TargetRegistration.id).where(
            TargetRegistration.expires_at <= at).order_by(TargetRegistration.id).limit(batch)))
        if not ids:
            break
        db.session.execute(delete(PersonBlock).where(PersonBlock.registration_id.in_(ids)))
        for side in ("a", "b"):
            col = getattr(Hit, f"{side}_registration_id")
            db.session.execute(update(Hit).where(col.in_(ids)).values({col: None}))
        db.session.execute(delete(TargetRegistration).where(TargetRegistration.id.in_(ids)))
        total += len(ids)
        if len(ids) < batch:
            break
    # values sharing a key64 in one case: close the slots the deletes freed, in the same
    # transaction (a slot-0 insert must collide with any value still there: bulk.py)
    bulk.renumber_slots(db.session.connection())
    audit.record(actor=actor, action="deconfliction.purge", object_type="registration",
                 details={"purged": total})
    db.session.commit()
    return total


# --------------------------------------------------------------------------- notifications

@dataclass
class NotificationList:
    unread: int
    items: list[Notification]


def list_notifications(*, actor: Actor, limit: int = NOTIFICATIONS_SHOWN) -> NotificationList:
    """The actor's unread count and latest notifications (the live badge's poll)."""
    if not actor.authenticated:
        raise NotFound("No notifications.")
    unread = db.session.scalar(select(func.count()).select_from(Notification).where(
        Notification.user_id == actor.user_id, Notification.read_at.is_(None))) or 0
    items = list(db.session.scalars(select(Notification).where(
        Notification.user_id == actor.user_id)
        .order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)))
    return NotificationList(unread=unread, items=items)


def mark_notifications_read(*, actor: Actor, ids: Any = None, all: bool = False) -> int:
    """Mark some (ids) or all of the actor's own notifications read; returns how many."""
    errors = _Errors()
    wanted: list[int] = []
    if not all:
        if not isinstance(ids, (list, tuple)) or not ids:
            errors.add("ids", "Give the ids to mark read, or all: true.")
        else:
            for i, raw in enumerate(ids):
                row_id = _as_id(raw)
                if row_id is None:
                    errors.add(f"ids.{i}", "Must be a whole number, 1 or more.")
                else:
                    wanted.append(row_id)
    errors.raise_if_any()
    query = update(Notification).where(Notification.user_id == actor.user_id,
                                       Notification.read_at.is_(None))
    if not all:
        query = query.where(Notification.id.in_(wanted))
    count = db.session.execute(query.values(read_at=now())).rowcount or 0
    audit.record(actor=actor, action="notification.read", object_type="notification",
                 details={"count": count, "all": bool(all)})
    db.session.commit()
    return count
