"""Finding conflicts: exact, possible (people) and second-degree matches.

Read-only: this module looks registrations up and scores them; service.py turns
what it finds into hits. Never a scan: every lookup is an index seek.

Exact
    An identifier's index key (blind.Keyring.value_key: the normalized value, or its
    HMAC tag) is looked up by its 64-bit prefix (``key64``, the index's seek) among
    live rows of the current key scheme, a batch of keys per query, and the full
    (kind, value_key) compared on every row found: two values sharing a prefix never
    meet.

Possible (people)
    A person registration stores its blocking keys (identifiers.person_blocking_keys:
    birth year + phonetic codes of each pair of name words). A probe asks for its
    ``person_query_keys`` (birth years year-1..year+1) on the ``block_key`` index; the
    registrations that share a block are the candidates (at most ``CANDIDATE_CAP``),
    and each is scored:

    * plain index: ``identifiers.name_similarity`` of the two names (rapidfuzz
      token_sort_ratio on the normalized words), times a date-of-birth factor: 1.0
      for the same date; 0.95 for the same year with day and month swapped or one of
      them equal, or a year one off with the same day and month (a typo); 0.90 for the
      same year; 0.85 for a year one off;
    * blind index: the name cannot be read back, so it is scored on the *sketch*:
      per name word, 64-bit HMAC tags of the word, of its Soundex and of its
      Metaphone code. Two words score 1.0 when their word tags are equal, 0.85 when
      both phonetic tags are, 0.70 when one is, else 0; the name score is the Dice
      coefficient over the best one-to-one pairing of words (2 x sum / (n + m)). The
      date factor is 1.0 when the date-of-birth tags are equal, 0.90 when the
      matching block was of the same birth year, 0.85 when one year off (the stored
      block keys carry the year, inside the tag).

    A candidate whose score reaches ``POSSIBLE_THRESHOLD`` (0.80) is a possible
    match: "Jon Smith" / "John Smyth", both born 1990-04-12, scores 0.84 plain and
    0.85 blind. What the blind index costs in precision: within one word it sees
    only "same letters" or "sounds the same", not how many letters differ, so
    "John" / "Jane" (same Soundex J500, same Metaphone JN) count as much alike as
    "Jon" / "John"; "John Smith" / "Jane Smith" of the same date scores 0.80 plain
    and 0.93 blind, and a day/month swap of the date of birth, which the plain index
    recognises, is only "same year" blind. Recall is the same (the same blocks);
    there are more possible hits to look at, not fewer found.

Second-degree
    The new registration's entity is one link away, in Neo4j, from an entity that
    another case registered: e.g. the new phone called the other case's target
    phone 40 times. Each (entity, case that holds it) pair is walked one hop with
    need-to-know limited to that one case (what ``queries.expand`` does for one
    pair; the pairs go to Neo4j a batch per UNWIND read), so a link only counts
    when it belongs to one of the two sides' own cases: a third case's link never
    tells two agencies about each other. The score is
    ``min(0.9, 0.5 + 0.1 * log2(1 + count)) * confidence`` of the strongest link.
    Runs only when the graph engine is configured (NEO4J_PASSWORD set) and
    reachable; otherwise it finds nothing and says so in the log.
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

import jellyfish
from flask import current_app
from sqlalchemy import bindparam, select

from taskforce.deconfliction.blind import Keyring
from taskforce.deconfliction.models import PersonBlock, TargetRegistration
from taskforce.extensions import db
from taskforce.graph import identifiers as idents

log = logging.getLogger(__name__)

POSSIBLE_THRESHOLD = 0.80
CANDIDATE_CAP = 1000  # candidates scored per person probe (a very common name in one block)
LOOKUP_CHUNK = 500  # keys per IN (...) query
SECOND_DEGREE_MAX_CASES = 50  # cases holding one entity that the graph is asked about
SECOND_DEGREE_MAX_NEIGHBOURS = 500
SECOND_DEGREE_BATCH = 200  # (entity, case) pairs per graph read

KIND_RANK = {"exact": 3, "possible": 2, "second_degree": 1}


# --------------------------------------------------------------------------- probes

@dataclass(frozen=True)
class PersonProbe:
    tokens: tuple[str, ...]
    dob: date
    # stored block key (as the index holds it) -> the birth year it stands for
    query_keys: dict[str, int]
    sketch: dict[str, Any] | None


@dataclass(frozen=True)
class Probe:
    """One identifier to check, in the form the index is searched with."""

    kind: str
    value_key: str
    display: str = ""
    person: PersonProbe | None = None
    registration_id: int | None = None
    case_id: int | None = None
    entity_id: int | None = None
    key64: int | None = None  # blind.key64 of value_key (derived when not given)


@dataclass
class Match:
    kind: str  # exact | possible | second_degree
    score: float
    probe: Probe
    other: TargetRegistration
    details: dict[str, Any] = field(default_factory=dict)


def person_parts(value: str) -> tuple[tuple[str, ...], date]:
    """Name words and date of birth of a normalized person value (``JOHN|SMITH|1990-04-12``)."""
    *tokens, dob = value.split("|")
    return tuple(tokens), date.fromisoformat(dob)


def person_sketch(tokens: Sequence[str], dob: date, ring: Keyring) -> dict[str, Any]:
    """What a blind person registration keeps to be scored with (see the docstring)."""
    words = sorted({t for t in tokens if t})
    return {
        "v": 1,
        "w": [[ring.sketch_tag("pw", w), ring.sketch_tag("psx", jellyfish.soundex(w)),
               ring.sketch_tag("pmp", jellyfish.metaphone(w) or w)] for w in words],
        "d": ring.sketch_tag("pdob", dob.isoformat()),
    }


def person_block_keys(tokens: Sequence[str], dob: date, ring: Keyring) -> set[str]:
    """The block keys to store for a person, as the index holds them."""
    return {ring.block_key(k) for k in idents.person_blocking_keys(" ".join(tokens), dob)}


def make_probe(ident: idents.Identifier, ring: Keyring, *, registration_id: int | None = None,
               case_id: int | None = None, entity_id: int | None = None) -> Probe:
    person = None
    if ident.kind == "person":
        tokens, dob = person_parts(ident.value)
        query_keys: dict[str, int] = {}
        for year in (dob.year - 1, dob.year, dob.year + 1):
            try:
                keys = idents.person_blocking_keys(" ".join(tokens), date(year, 1, 1))
            except idents.InvalidIdentifier:  # a year outside the plausible range
                continue
            for k in keys:
                query_keys[ring.block_key(k)] = year
        person = PersonProbe(tokens=tokens, dob=dob, query_keys=query_keys,
                             sketch=person_sketch(tokens, dob, ring) if ring.blind else None)
    value_key = ring.value_key(ident.kind, ident.value)
    return Probe(kind=ident.kind, value_key=value_key,
                 display=ident.display or ident.value, person=person,
                 registration_id=registration_id, case_id=case_id, entity_id=entity_id,
                 key64=ring.key64(ident.kind, value_key))


# --------------------------------------------------------------------------- scoring

def dob_factor(a: date, b: date) -> float:
    """How much two dates of birth support "same person" (plain index)."""
    if a == b:
        return 1.0
    same_md = (a.month, a.day) == (b.month, b.day)
    if a.year == b.year:
        if (a.month, a.day) == (b.day, b.month) or a.month == b.month or a.day == b.day:
            return 0.95
        return 0.90
    if abs(a.year - b.year) == 1:
        return 0.95 if same_md else 0.85
    return 0.0


def plain_person_score(probe: PersonProbe, other_value: str) -> float:
    tokens, dob = person_parts(other_value)
    name = idents.name_similarity(" ".join(probe.tokens), " ".join(tokens))
    return name * dob_factor(probe.dob, dob)


def _word_score(a: Sequence[str], b: Sequence[str]) -> float:
    if a[0] == b[0]:
        return 1.0
    same = (a[1] == b[1]) + (a[2] == b[2])
    return 0.85 if same == 2 else 0.70 if same == 1 else 0.0


def sketch_name_score(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Dice coefficient over the best one-to-one pairing of name words (greedy on the
    pair scores, which is optimal for the few words of a name in all but odd ties)."""
    wa, wb = a.get("w") or [], b.get("w") or []
    if not wa or not wb:
        return 0.0
    pairs = sorted(((_word_score(x, y), i, j) for i, x in enumerate(wa)
                    for j, y in enumerate(wb)), reverse=True)
    used_a: set[int] = set()
    used_b: set[int] = set()
    total = 0.0
    for score, i, j in pairs:
        if score <= 0:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        total += score
    return 2 * total / (len(wa) + len(wb))


def blind_person_score(probe: PersonProbe, other_sketch: dict[str, Any] | None,
                       year_offset: int) -> float:
    if not other_sketch or probe.sketch is None:
        return 0.0
    name = sketch_name_score(probe.sketch, other_sketch)
    if probe.sketch.get("d") == other_sketch.get("d"):
        factor = 1.0
    else:
        factor = 0.90 if year_offset == 0 else 0.85
    return name * factor


# --------------------------------------------------------------------------- lookups

def _live(ring: Keyring, now: datetime):
    return (TargetRegistration.scheme == ring.scheme, TargetRegistration.expires_at > now)


# The lookups every check makes, built once with bind parameters: building and
# coercing a statement per call took more of a check than PostgreSQL's work.
_LIVE = (TargetRegistration.scheme == bindparam("scheme"),
         TargetRegistration.expires_at > bindparam("now"))
_OTHER_CASES = TargetRegistration.case_id != bindparam("case_id")
_BY_KEY64 = select(TargetRegistration).where(
    TargetRegistration.key64.in_(bindparam("keys", expanding=True)), *_LIVE)
_BY_KEY64_OTHER_CASES = _BY_KEY64.where(_OTHER_CASES)
_IN_BLOCKS = (select(PersonBlock.block_key, TargetRegistration)
              .join(TargetRegistration, PersonBlock.registration_id == TargetRegistration.id)
              .where(PersonBlock.block_key.in_(bindparam("blocks", expanding=True)),
                     TargetRegistration.kind == "person", *_LIVE)
              .limit(CANDIDATE_CAP * 4))
_IN_BLOCKS_OTHER_CASES = _IN_BLOCKS.where(_OTHER_CASES)


def _chunks(items: Sequence[Any], size: int = LOOKUP_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def exact_matches(probes: Sequence[Probe], *, ring: Keyring, now: datetime,
                  exclude_case_id: int | None = None) -> list[Match]:
    """Every live registration of another case with the same (kind, value_key):
    sought by key64, then the full key compared (a shared prefix is no match)."""
    keyed: dict[tuple[str, str], list[Probe]] = defaultdict(list)
    key64s: set[int] = set()
    for p in probes:
        keyed[(p.kind, p.value_key)].append(p)
        key64s.add(p.key64 if p.key64 is not None else ring.key64(p.kind, p.value_key))
    found: list[Match] = []
    for other in registrations_by_key64(sorted(key64s), ring=ring, now=now,
                                        exclude_case_id=exclude_case_id):
        for p in keyed.get((other.kind, other.value_key), ()):
            found.append(Match("exact", 1.0, p, other))
    return found


def registrations_by_key64(key64s: Sequence[int], *, ring: Keyring, now: datetime,
                           exclude_case_id: int | None = None) -> list[TargetRegistration]:
    """Live registrations of the current scheme holding these key64s (any value:
    the caller compares the full key)."""
    out: list[TargetRegistration] = []
    query = _BY_KEY64 if exclude_case_id is None else _BY_KEY64_OTHER_CASES
    for chunk in _chunks(list(key64s)):
        out.extend(db.session.scalars(query, {"keys": chunk, "scheme": ring.scheme, "now": now,
                                              "case_id": exclude_case_id}))
    return out


def possible_matches(probes: Sequence[Probe], *, ring: Keyring, now: datetime,
                     exclude_case_id: int | None = None) -> list[Match]:
    """Live person registrations of other cases that share a block and score high enough."""
    found: list[Match] = []
    for p in probes:
        if p.person is None or not p.person.query_keys:
            continue
        query = _IN_BLOCKS if exclude_case_id is None else _IN_BLOCKS_OTHER_CASES
        candidates: dict[int, tuple[TargetRegistration, int]] = {}
        for block_key, other in db.session.execute(query, {
                "blocks": list(p.person.query_keys), "scheme": ring.scheme, "now": now,
                "case_id": exclude_case_id}):
            if other.value_key == p.value_key:
                continue  # the same person exactly: an exact match, found there
            offset = abs(p.person.query_keys[block_key] - p.person.dob.year)
            best = candidates.get(other.id)
            if best is None or offset < best[1]:
                candidates[other.id] = (other, offset)
            if len(candidates) >= CANDIDATE_CAP:
                break
        for other, offset in candidates.values():
            if ring.blind:
                score = blind_person_score(p.person, other.sketch, offset)
            else:
                score = plain_person_score(p.person, other.value_key)
            if score >= POSSIBLE_THRESHOLD:
                found.append(Match("possible", round(score, 3), p, other))
    return found


def find(probes: Sequence[Probe], *, ring: Keyring, now: datetime,
         exclude_case_id: int | None = None) -> list[Match]:
    """Exact and possible matches of the probes; one (the strongest) per probe and
    registration found."""
    matches = exact_matches(probes, ring=ring, now=now, exclude_case_id=exclude_case_id)
    matches += possible_matches(probes, ring=ring, now=now, exclude_case_id=exclude_case_id)
    return strongest(matches)


def strongest(matches: Iterable[Match]) -> list[Match]:
    best: dict[tuple[Any, int], Match] = {}
    for m in matches:
        key = (m.probe.registration_id or id(m.probe), m.other.id)
        cur = best.get(key)
        if cur is None or (KIND_RANK[m.kind], m.score) > (KIND_RANK[cur.kind], cur.score):
            best[key] = m
    return list(best.values())


# --------------------------------------------------------------------------- second degree

def graph_configured() -> bool:
    """Second-degree needs the graph engine: only when it is configured (a password)."""
    return bool(current_app.config.get("NEO4J_PASSWORD"))


def second_degree(probes: Sequence[Probe], *, ring: Keyring, now: datetime) -> list[Match]:
    """Registrations of other cases one link away, in Neo4j, from the probes' entities.

    Only probes of registered identifiers with an entity take part. Each (entity,
    case that holds it) pair is asked about limited to that case, and a link counts
    only when it belongs to the probe's own case or to the other registration's
    case. The pairs go to the graph in batches (one UNWIND read per
    ``SECOND_DEGREE_BATCH`` pairs, see _neighbours_batched): an import of 200k
    call rows spent ~47 s asking one entity at a time; for 1,000 registered phones
    with 3,000 calls the check took 0.41 s batched against 5.1 s one at a time (same
    matches, measured once on the real services). Returns [] when the graph
    engine is not configured or not reachable (logged): registration never fails
    for it.
    """
    todo = [p for p in probes if p.entity_id is not None and p.case_id is not None]
    if not todo or not _graph_ready():
        return []
    todo = _current_entities(todo)
    from taskforce.graph.outbox import entity_node_id

    cases_of = _cases_holding(sorted({p.entity_id for p in todo}))
    pairs = [(p, case_id) for p in todo
             for case_id in sorted(cases_of.get(p.entity_id, set()) | {p.case_id})]
    strengths: dict[tuple[str, int], dict[int, float]] = {}
    for chunk in _chunks(sorted({(entity_node_id(p.entity_id), c) for p, c in pairs}),
                         SECOND_DEGREE_BATCH):
        try:
            strengths.update(_neighbours_batched(chunk))
        except Exception as exc:  # noqa: BLE001
            log.warning("deconfliction: second-degree query failed for %d entities: %s",
                        len(chunk), exc)
    return _second_degree_matches(
        [(p, c, strengths.get((entity_node_id(p.entity_id), c), {})) for p, c in pairs],
        ring=ring, now=now)


def second_degree_one_at_a_time(probes: Sequence[Probe], *, ring: Keyring, now: datetime
                                ) -> list[Match]:
    """The same as second_degree, asking the graph one (entity, case) at a time through
    ``queries.expand``: the reference the batched path is tested against."""
    todo = [p for p in probes if p.entity_id is not None and p.case_id is not None]
    if not todo or not _graph_ready():
        return []
    todo = _current_entities(todo)
    from taskforce.graph import queries
    from taskforce.graph.outbox import entity_node_id

    cases_of = _cases_holding(sorted({p.entity_id for p in todo}))
    found = []
    for p in todo:
        node = entity_node_id(p.entity_id)
        for case_id in sorted(cases_of.get(p.entity_id, set()) | {p.case_id}):
            try:
                result = queries.expand(case_ids=[case_id], entity_ids=[node], hops=1,
                                        limit=SECOND_DEGREE_MAX_NEIGHBOURS)
            except Exception as exc:  # noqa: BLE001
                log.warning("deconfliction: second-degree query failed for case %s: %s",
                            case_id, exc)
                continue
            strength: dict[int, float] = {}
            for edge in result["edges"]:
                other_node = edge["target"] if edge["source"] == node else edge["source"]
                if other_node == node or not str(other_node).startswith("ent-"):
                    continue
                _stronger(strength, int(str(other_node)[4:]), edge.get("count"),
                          edge.get("confidence"))
            found.append((p, case_id, strength))
    return _second_degree_matches(found, ring=ring, now=now)


def _current_entities(probes: Sequence[Probe]) -> list[Probe]:
    """The probes that take part (registered, with an entity), each naming the
    entity it is now: a registration keeps the id of an entity a merge absorbed
    (that entity is gone from the graph), so it is read through merged_into_id;
    after an unmerge the same registration names its own entity again."""
    now_of = resolve_merged({p.entity_id for p in probes})
    return [replace(p, entity_id=now_of.get(p.entity_id, p.entity_id)) for p in probes]


MERGE_DEPTH_MAX = 50  # merges of merges followed (a cycle cannot happen; this bounds it)


def resolve_merged(entity_ids: Iterable[int]) -> dict[int, int]:
    """entity id -> the entity it is merged into now, through merges of merges
    (ids not merged map to themselves)."""
    from taskforce.graph.models import Entity

    now_of = {e: e for e in entity_ids}
    pending = {e: e for e in now_of}  # original -> where it has got to
    for _ in range(MERGE_DEPTH_MAX):
        if not pending:
            break
        into: dict[int, int] = {}
        for chunk in _chunks(sorted(set(pending.values()))):
            into.update((a, b) for a, b in db.session.execute(
                select(Entity.id, Entity.merged_into_id).where(
                    Entity.id.in_(chunk), Entity.merged_into_id.is_not(None))))
        pending = {orig: into[at] for orig, at in pending.items() if at in into}
        now_of.update(pending)
    return now_of


def absorbed_into(entity_ids: Iterable[int]) -> dict[int, set[int]]:
    """entity id -> itself and every entity merged into it, directly or through
    merges of merges (what registrations may still name it by)."""
    from taskforce.graph.models import Entity

    out = {e: {e} for e in entity_ids}
    frontier = {e: e for e in out}  # absorbed or start id -> the start it belongs to
    for _ in range(MERGE_DEPTH_MAX):
        if not frontier:
            break
        found: dict[int, int] = {}
        for chunk in _chunks(sorted(frontier)):
            for eid, into in db.session.execute(select(Entity.id, Entity.merged_into_id)
                                                .where(Entity.merged_into_id.in_(chunk))):
                found[eid] = frontier[into]
                out[frontier[into]].add(eid)
        frontier = found
    return out


def _graph_ready() -> bool:
    if not graph_configured():
        return False
    try:
        from taskforce.graph import client

        client.driver().verify_connectivity()  # fail fast: managed transactions retry for 30 s
    except Exception as exc:  # noqa: BLE001  (the graph is optional for registering)
        log.warning("deconfliction: second-degree check skipped, graph engine unavailable: %s",
                    exc)
        return False
    return True


def _cases_holding(entity_ids: Sequence[int]) -> dict[int, set[int]]:
    """entity id -> the cases that hold it (at most SECOND_DEGREE_MAX_CASES each)."""
    from taskforce.graph.models import CaseEntity

    out: dict[int, set[int]] = defaultdict(set)
    for chunk in _chunks(entity_ids):
        for entity_id, case_id in db.session.execute(
                select(CaseEntity.entity_id, CaseEntity.case_id)
                .where(CaseEntity.entity_id.in_(chunk))
                .order_by(CaseEntity.entity_id, CaseEntity.case_id)):
            if len(out[entity_id]) < SECOND_DEGREE_MAX_CASES:
                out[entity_id].add(case_id)
    return out


def _stronger(strength: dict[int, float], neighbour: int, count: Any, confidence: Any) -> None:
    """Keep the strongest link to each neighbour: min(0.9, 0.5 + 0.1 log2(1 + count))
    times its confidence."""
    confidence = float(confidence if confidence is not None else 1.0)
    score = min(0.9, 0.5 + 0.1 * math.log2(1 + int(count or 1))) * confidence
    strength[neighbour] = max(strength.get(neighbour, 0.0), score)


def _neighbours_batched(pairs: Sequence[tuple[str, int]]) -> dict[tuple[str, int],
                                                                   dict[int, float]]:
    """For each (entity node id, case id): its neighbours over that case's links,
    as {neighbour entity id: strongest link score}, in one read.

    What ``queries.expand(case_ids=[case], entity_ids=[node], hops=1,
    limit=SECOND_DEGREE_MAX_NEIGHBOURS)`` gives for one pair, asked for many:
    the start node, the link and the neighbour must each belong to that case (the
    need-to-know predicate with one case), link types come from the projection's
    allow-list, the nearest SECOND_DEGREE_MAX_NEIGHBOURS - 1 neighbours by id are
    kept (expand's limit counts the start node), and the read has the graph
    queries' timeout. Parameterised: the pairs travel as a parameter.
    """
    from taskforce.graph import client, queries
    from taskforce.graph.projection import LINK_TYPES

    types = "|".join(LINK_TYPES)  # allow-listed names: relationship types cannot be parameters
    cypher = (
        "UNWIND $pairs AS pair "
        "MATCH (s:Entity {id: pair.node}) WHERE pair.case IN s.cases "
        "CALL (s, pair) { "
        f"  MATCH (s)-[r:{types}]-(b:Entity) "
        "   WHERE b <> s AND pair.case IN r.cases AND pair.case IN b.cases "
        "   WITH b, collect([properties(r).count, properties(r).confidence]) AS links "
        "   ORDER BY b.id LIMIT $neighbours "
        "   RETURN collect([b.id, links]) AS neighbours "
        "} "
        "RETURN pair.node AS node, pair.case AS case_id, neighbours")
    rows = client.read(cypher, timeout=queries.QUERY_TIMEOUT,
                       pairs=[{"node": node, "case": case_id} for node, case_id in pairs],
                       neighbours=SECOND_DEGREE_MAX_NEIGHBOURS - 1)
    out: dict[tuple[str, int], dict[int, float]] = {}
    for row in rows:
        strength: dict[int, float] = {}
        for other_node, links in row["neighbours"]:
            if not str(other_node).startswith("ent-"):
                continue
            for count, confidence in links:
                _stronger(strength, int(str(other_node)[4:]), count, confidence)
        out[(row["node"], row["case_id"])] = strength
    return out


def _second_degree_matches(found: Sequence[tuple[Probe, int, dict[int, float]]], *,
                           ring: Keyring, now: datetime) -> list[Match]:
    """Matches from (probe, the case whose links were walked, neighbour -> score):
    the live registrations of other cases naming a neighbour, when that case is one
    of the two sides'. The registrations of all neighbours are looked up at once."""
    neighbours = sorted({n for _, _, strength in found for n in strength})
    if not neighbours:
        return []
    regs_of = _registrations_of(neighbours, ring=ring, now=now)
    out: list[Match] = []
    for p, case_id, strength in found:
        for other, entity_ids in _regs_for(strength, regs_of):
            if other.case_id == p.case_id:
                continue
            # the link must be one of the two sides' own: this case is p's or other's
            if case_id not in (p.case_id, other.case_id):
                continue
            score = max(strength[e] for e in entity_ids)
            out.append(Match("second_degree", round(score, 3), p, other,
                             details={"link_case_id": case_id}))
    return strongest(out)


def _regs_for(strength: dict[int, float], regs_of: dict[int, list[TargetRegistration]]
              ) -> list[tuple[TargetRegistration, list[int]]]:
    """The registrations naming these neighbours, each with the neighbours it names."""
    by_reg: dict[int, tuple[TargetRegistration, list[int]]] = {}
    for entity_id in sorted(strength):
        for reg in regs_of.get(entity_id, ()):
            by_reg.setdefault(reg.id, (reg, []))[1].append(entity_id)
    return [by_reg[k] for k in sorted(by_reg)]


def _registrations_of(entity_ids: Sequence[int], *, ring: Keyring, now: datetime
                      ) -> dict[int, list[TargetRegistration]]:
    """entity id -> live registrations naming it: by entity id, or by identifier value."""
    from taskforce.graph.models import Identifier as GraphIdentifier

    out: dict[int, dict[int, TargetRegistration]] = defaultdict(dict)
    # a registration naming an entity merged into a neighbour names the neighbour
    named_by = {a: e for e, absorbed in absorbed_into(entity_ids).items() for a in absorbed}
    for chunk in _chunks(sorted(named_by)):
        for reg in db.session.scalars(select(TargetRegistration).where(
                TargetRegistration.entity_id.in_(chunk), *_live(ring, now))):
            out[named_by[reg.entity_id]][reg.id] = reg
    for chunk in _chunks(list(entity_ids)):
        rows = db.session.execute(select(GraphIdentifier.entity_id, GraphIdentifier.kind,
                                         GraphIdentifier.value)
                                  .where(GraphIdentifier.entity_id.in_(chunk))).all()
        keyed: dict[tuple[str, str], set[int]] = defaultdict(set)
        for r in rows:
            keyed[(r.kind, ring.value_key(r.kind, r.value))].add(r.entity_id)
        for reg in registrations_by_key64(sorted({ring.key64(k, vk) for k, vk in keyed}),
                                          ring=ring, now=now):
            for entity_id in keyed.get((reg.kind, reg.value_key), ()):
                out[entity_id].setdefault(reg.id, reg)
    return {e: list(regs.values()) for e, regs in out.items()}
