"""Every graph question, asked of Neo4j in Cypher, limited to what the actor may see.

Need to know (DESIGN.md, invariant 2) is applied here, once, to every node AND every
relationship a question touches, traversed or returned: an element is visible iff
``any(c IN x.cases WHERE c IN $case_ids)``. ``case_ids`` is the list of cases the
actor may read, computed by the caller from the one permission check. An entity of
two cases is therefore seen by a member of either, but only with the links of the
cases that member may read; a bare endpoint node (a link that arrived before its
entity, see projection.py) has no cases and is never seen.

Conventions:

* keyword-only arguments; bad arguments raise ValueError with a message for the user
  (the API layer answers 422); an entity the actor may not see is treated exactly as
  one that does not exist (no error that would tell the difference);
* parameterised Cypher only; relationship types and labels, which cannot be
  parameters, come from the allow-lists in projection.py, and path-length bounds,
  which cannot be parameters in a quantified path pattern, are validated integers;
* every query has a timeout (``QUERY_TIMEOUT`` seconds) and a row limit;
* results are plain dicts: nodes ``{id, kind, label, survivor, minor}``, edges
  ``{id, type, source, target, first_seen, last_seen, confidence, count, amount}``
  (dates as ISO 8601 text in UTC). Paths are ``{"nodes": [...], "edges": [...],
  "length": n}`` with nodes in path order. ``label`` is the projection's display
  label: survivor pseudonymisation is the serializer's job (``survivor`` says when).

Paths and expansion ignore link direction (a call or a payment ties two entities
either way, and the synthetic ground truth is undirected), except time-respecting
paths, which follow it (money and calls flow from source to target).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from taskforce.graph import client
from taskforce.graph.projection import LINK_TYPES, kind_label, to_datetime

__all__ = [
    "QUERY_TIMEOUT",
    "all_shortest_paths",
    "case_subgraph",
    "expand",
    "shared_connections",
    "shortest_path",
    "time_respecting_paths",
]

QUERY_TIMEOUT = 20.0  # seconds, per query
MAX_HOPS_EXPAND = 3
MAX_HOPS_PATH = 10
MAX_LIMIT = 5_000
MAX_SEEDS = 200

# The need-to-know predicate, for a node or relationship variable.
def _vis(var: str) -> str:
    return f"any(c IN {var}.cases WHERE c IN $case_ids)"


def _node(var: str) -> str:
    # The label a case the reader may read gives it (case_labels is aligned with
    # cases); `label` (the kind, or a pseudonym) only for nodes without per-case labels.
    # (properties(n).case_labels, not n.case_labels: a graph without per-case labels,
    # as the benchmark loads, would draw an "unknown property key" warning per query)
    labels = f"properties({var}).case_labels"
    per_case = (f"head([i IN range(0, size(coalesce({labels}, [])) - 1) "
                f"WHERE {var}.cases[i] IN $case_ids | {labels}[i]])")
    return (f"{var} {{.id, .kind, label: coalesce({per_case}, {var}.label), .survivor, "
            f".minor}}")


def _edge(var: str) -> str:
    # .* rather than naming each property: a property no link has yet (amount, in a
    # graph without payments) would draw an "unknown property key" warning. Dates
    # travel as text: the driver's hydration of a DateTime costs ~60 us in Python,
    # which dominated a 2-hop expand.
    props = f"properties({var})"
    return (f"{var} {{.*, type: type({var}), source: startNode({var}).id, "
            f"target: endNode({var}).id, first_seen: toString({props}.first_seen), "
            f"last_seen: toString({props}.last_seen)}}")


_NODE_KEYS = ("id", "kind", "label", "survivor", "minor")
_EDGE_KEYS = ("id", "type", "source", "target", "first_seen", "last_seen", "confidence",
              "count", "amount")


# --------------------------------------------------------------------------- arguments

def _case_ids(case_ids: Any) -> list[int]:
    if case_ids is None or isinstance(case_ids, (str, bytes)) or not isinstance(
            case_ids, Iterable):
        raise ValueError("case_ids must be a list of case ids")
    out = set()
    for c in case_ids:
        if isinstance(c, bool) or not isinstance(c, int):
            raise ValueError(f"case ids must be integers, not {c!r}")  # noqa: TRY004
        out.add(c)
    return sorted(out)


def _entity_id(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise ValueError(f"{what} must be an entity id")
    return str(value)


def _entity_ids(values: Any, what: str = "entity_ids", *, at_least: int = 1) -> list[str]:
    if values is None or isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(f"{what} must be a list of entity ids")
    ids = list(dict.fromkeys(_entity_id(v, what) for v in values))
    if len(ids) < at_least:
        raise ValueError(f"{what} needs at least {at_least} distinct entity "
                         f"id{'s' if at_least > 1 else ''}")
    if len(ids) > MAX_SEEDS:
        raise ValueError(f"{what}: at most {MAX_SEEDS} entities at once")
    return ids


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number from {lo} to {hi}")  # noqa: TRY004
    if not lo <= value <= hi:
        raise ValueError(f"{what} must be from {lo} to {hi}, not {value}")
    return value


def _types(link_types: Any, what: str = "link_types") -> list[str]:
    if link_types is None:
        return []
    if isinstance(link_types, str):
        link_types = [link_types]
    out = []
    for t in link_types:
        up = t.strip().upper() if isinstance(t, str) else t
        if up not in LINK_TYPES:
            raise ValueError(f"{what}: unknown link type {t!r}; known: {', '.join(LINK_TYPES)}")
        out.append(up)
    if not out:
        raise ValueError(f"{what} must name at least one link type (or be omitted)")
    return sorted(set(out))


def _type_pattern(types: Sequence[str]) -> str:
    """``:CALLED|PAID`` for a relationship pattern (types from the allow-list only)."""
    return (":" + "|".join(types)) if types else ""


def _labels(kinds: Any) -> list[str]:
    if kinds is None:
        return []
    if isinstance(kinds, str):
        kinds = [kinds]
    out = sorted({kind_label(k) for k in kinds})
    if not out:
        raise ValueError("kinds must name at least one entity kind (or be omitted)")
    return out


def _when(value: Any, what: str) -> datetime | None:
    return to_datetime(value, what)


# --------------------------------------------------------------------------- helpers

def _read(cypher: str, **params: Any) -> list[dict[str, Any]]:
    return client.read(cypher, timeout=QUERY_TIMEOUT, **params)


def _iso_utc(text: str | None) -> str | None:
    """Cypher's toString() of a datetime -> ISO 8601 in UTC, as the API serves dates."""
    if text is None:
        return None
    dt = datetime.fromisoformat(text.split("[", 1)[0])
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """A node or edge map from Cypher -> the plain dict the API serves."""
    if "type" in d and "source" in d:  # an edge
        out = {k: d.get(k) for k in _EDGE_KEYS}
        for k in ("first_seen", "last_seen"):
            out[k] = _iso_utc(out[k])
        return out
    return {k: d.get(k) for k in _NODE_KEYS}


def _path(record: dict[str, Any]) -> dict[str, Any]:
    nodes = [_clean(n) for n in record["nodes"]]
    edges = [_clean(e) for e in record["edges"]]
    return {"nodes": nodes, "edges": edges, "length": len(edges)}


def _visible_ids(case_ids: list[int], ids: list[str]) -> list[str]:
    rows = _read(f"MATCH (n:Entity) WHERE n.id IN $ids AND {_vis('n')} RETURN n.id AS id",
                 ids=ids, case_ids=case_ids)
    seen = {r["id"] for r in rows}
    return [i for i in ids if i in seen]


# --------------------------------------------------------------------------- expand

def expand(*, case_ids: list[int], entity_ids: list[str], hops: int = 1,
           kinds: list[str] | None = None, link_types: list[str] | None = None,
           since: Any = None, until: Any = None, min_confidence: float | None = None,
           limit: int = 500) -> dict[str, Any]:
    """The neighbourhood of ``entity_ids`` up to ``hops`` links away (1-3), ignoring
    direction, as ``{"nodes", "edges", "truncated"}``.

    Filters, applied to every step of the expansion (what a filter leaves out is not
    walked through either):

    * ``kinds``: entity kinds reached (the starting entities are always kept);
    * ``link_types``: the link types followed;
    * ``since`` / ``until``: links active in the window, i.e. ``last_seen >= since``
      and ``first_seen <= until`` (links without those dates are left out when a
      bound is given);
    * ``min_confidence``: links with ``confidence >= min_confidence``.

    ``edges`` are the visible, matching links with one end within ``hops - 1`` of a
    start and the other in the result (no links among the outermost ring). At most
    ``limit`` nodes, nearest first (then by id); ``truncated`` says when more were
    reachable. Starting entities the actor may not see are ignored.
    """
    cases = _case_ids(case_ids)
    seeds = _entity_ids(entity_ids)
    hops = _int(hops, "hops", 1, MAX_HOPS_EXPAND)
    limit = _int(limit, "limit", 1, MAX_LIMIT)
    labels = _labels(kinds)
    types = _types(link_types)
    since_dt, until_dt = _when(since, "since"), _when(until, "until")
    if since_dt and until_dt and until_dt < since_dt:
        raise ValueError("until is before since")
    if min_confidence is not None and (
            isinstance(min_confidence, bool) or not isinstance(min_confidence, (int, float))
            or not 0 <= min_confidence <= 1):
        raise ValueError("min_confidence must be a number from 0 to 1")
    empty = {"nodes": [], "edges": [], "truncated": False}
    if not cases:
        return empty

    where = [_vis("r"), _vis("b")]
    if labels:
        where.append(f"(b:{'|'.join(labels)} OR b.id IN $seeds)")
    if since_dt is not None:
        where.append("r.last_seen >= $since")
    if until_dt is not None:
        where.append("r.first_seen <= $until")
    if min_confidence is not None:
        where.append("r.confidence >= $min_confidence")
    # A breadth-first search in one query, one CALL per hop: each level is expanded
    # once, so the work grows with the neighbourhood, not with the number of paths
    # through it (as with a variable-length pattern). Levels before the last are
    # de-duplicated in Cypher (the next frontier); the last one in Python.
    row_cap = max(20 * limit, 10_000)
    step = (f"UNWIND frontier AS a MATCH (a)-[r{_type_pattern(types)}]-(b:Entity) "
            f"WHERE {' AND '.join(where)} WITH r, b LIMIT $row_cap "
            "RETURN collect(r) AS e, collect(DISTINCT b) AS reached, count(*) AS rows")
    parts = [(f"MATCH (s:Entity) WHERE s.id IN $seeds AND {_vis('s')} "
              "WITH collect(s) AS l0 WITH l0, l0 AS frontier, l0 AS seen")]
    carried = ["l0"]
    for d in range(1, hops + 1):
        parts.append(f"CALL (frontier) {{ {step} }}")
        carried += [f"e{d}", f"n{d}"]
        keep_vars = ", ".join(carried[:-2])
        parts.append(f"WITH {keep_vars + ', ' if keep_vars else ''}seen, e AS e{d}, "
                     f"rows AS n{d}, reached")
        if d < hops:
            parts.append(f"WITH {', '.join(carried)}, seen, "
                         f"[b IN reached WHERE NOT b IN seen] AS l{d}")
            carried.append(f"l{d}")
            parts.append(f"WITH {', '.join(carried)}, l{d} AS frontier, seen + l{d} AS seen")
    levels = [f"l{d}" for d in range(hops)]
    parts.append(
        "RETURN "
        + ", ".join(f"[n IN {lv} | {_node('n')}] AS {lv}" for lv in levels)
        + f", [n IN reached | {_node('n')}] AS last, "
        + " + ".join(f"[x IN e{d} | {_edge('x')}]" for d in range(1, hops + 1)) + " AS edges, "
        + "[" + ", ".join(f"n{d}" for d in range(1, hops + 1)) + "] AS rows"
    )
    params = {"case_ids": cases, "seeds": seeds, "since": since_dt, "until": until_dt,
              "min_confidence": min_confidence, "row_cap": row_cap}
    rows = _read(" ".join(parts), **params)
    if not rows or not rows[0]["l0"]:
        return empty
    rec = rows[0]
    dist: dict[str, int] = {}
    nodes: dict[str, dict[str, Any]] = {}
    for d, lv in enumerate([*levels, "last"]):
        for n in rec[lv]:
            if n["id"] not in dist:
                dist[n["id"]] = d if lv != "last" else hops
                nodes[n["id"]] = _clean(n)
    edges = {e["id"]: _clean(e) for e in rec["edges"]}
    truncated = any(n >= row_cap for n in rec["rows"])
    keep = sorted(dist, key=lambda i: (dist[i], i))
    if len(keep) > limit:
        truncated = True
        keep = keep[:limit]
    kept = set(keep)
    return {
        "nodes": [nodes[i] for i in keep],
        "edges": sorted((e for e in edges.values()
                         if e["source"] in kept and e["target"] in kept),
                        key=lambda e: e["id"]),
        "truncated": truncated,
    }


# --------------------------------------------------------------------------- paths

def _endpoints(case_ids: Any, source: Any, target: Any) -> tuple[list[int], str, str]:
    cases = _case_ids(case_ids)
    s, t = _entity_id(source, "source"), _entity_id(target, "target")
    if s == t:
        raise ValueError("source and target must be different entities")
    return cases, s, t


def _step(types: Sequence[str], *, directed: bool = False, extra: str = "") -> str:
    """One step of a quantified path pattern, need-to-know checked while walking."""
    arrow = "->" if directed else "-"
    where = f"{_vis('r')} AND {_vis('x')}" + (f" AND {extra}" if extra else "")
    return f"(()-[r{_type_pattern(types)}]{arrow}(x:Entity) WHERE {where})"


_PATH_RETURN = (f"[n IN nodes(p) | {_node('n')}] AS nodes, "
                f"[e IN relationships(p) | {_edge('e')}] AS edges")


def shortest_path(*, case_ids: list[int], source: str, target: str, max_hops: int = 6,
                  link_types: list[str] | None = None) -> dict[str, Any] | None:
    """One shortest path between two entities over links the actor may see (through
    entities the actor may see), at most ``max_hops`` links, ignoring direction; None
    when there is none (or either end is not visible).

    Cypher ``SHORTEST 1`` with the need-to-know predicates inside the quantified path
    pattern, so they are checked during the (bidirectional breadth-first) search
    rather than on paths found afterwards.
    """
    cases, s, t = _endpoints(case_ids, source, target)
    max_hops = _int(max_hops, "max_hops", 1, MAX_HOPS_PATH)
    types = _types(link_types)
    if not cases:
        return None
    rows = _read(
        f"MATCH (a:Entity {{id: $source}}) WHERE {_vis('a')} "
        f"MATCH (b:Entity {{id: $target}}) WHERE {_vis('b')} "
        f"MATCH p = SHORTEST 1 (a){_step(types)}{{1,{max_hops}}}(b) "
        f"RETURN {_PATH_RETURN}",
        source=s, target=t, case_ids=cases)
    return _path(rows[0]) if rows else None


def all_shortest_paths(*, case_ids: list[int], source: str, target: str, max_hops: int = 6,
                       link_types: list[str] | None = None,
                       limit: int = 100) -> list[dict[str, Any]]:
    """Every shortest path (all of the same, least length) between two entities, as
    ``shortest_path`` sees the graph; at most ``limit``, in a stable order."""
    cases, s, t = _endpoints(case_ids, source, target)
    max_hops = _int(max_hops, "max_hops", 1, MAX_HOPS_PATH)
    limit = _int(limit, "limit", 1, MAX_LIMIT)
    types = _types(link_types)
    if not cases:
        return []
    rows = _read(
        f"MATCH (a:Entity {{id: $source}}) WHERE {_vis('a')} "
        f"MATCH (b:Entity {{id: $target}}) WHERE {_vis('b')} "
        f"MATCH p = ALL SHORTEST (a){_step(types)}{{1,{max_hops}}}(b) "
        "WITH p, reduce(k = '', e IN relationships(p) | k + e.id + '/') AS key "
        f"ORDER BY key LIMIT $limit RETURN {_PATH_RETURN}",
        source=s, target=t, case_ids=cases, limit=limit)
    return [_path(r) for r in rows]


def time_respecting_paths(*, case_ids: list[int], source: str, target: str | None = None,
                          link_types: Sequence[str] = ("PAID", "CALLED"), max_hops: int = 4,
                          limit: int = 100) -> list[dict[str, Any]]:
    """Chains of links leaving ``source`` in their own direction (``source`` paid or
    called someone, who paid or called someone, ...) whose dates go forward: each
    link's ``first_seen`` is not earlier than the one before it. Ending at ``target``
    when given, else anywhere. No entity twice on a chain; links without
    ``first_seen`` are not followed. Shortest first, at most ``limit``.

    How: a quantified path pattern walks the typed, visible links (need to know checked
    during the walk); the time order, which relates one step to the previous one and so
    cannot be an inline predicate in Neo4j 5 (Cypher 25's ``allReduce`` could), is a
    list predicate over the group variable ``r`` right after the match:
    ``all(i IN range(0, size(r) - 2) WHERE r[i].first_seen <= r[i + 1].first_seen)``.
    That is why ``max_hops`` is bounded (at most 6).
    """
    cases = _case_ids(case_ids)
    s = _entity_id(source, "source")
    t = None if target is None else _entity_id(target, "target")
    if t == s:
        raise ValueError("source and target must be different entities")
    types = _types(link_types)
    if not types:
        raise ValueError("link_types must name at least one link type")
    max_hops = _int(max_hops, "max_hops", 1, 6)
    limit = _int(limit, "limit", 1, MAX_LIMIT)
    if not cases:
        return []
    end = "(b)" if t is not None else "()"
    bind_b = f"MATCH (b:Entity {{id: $target}}) WHERE {_vis('b')} " if t is not None else ""
    rows = _read(
        f"MATCH (a:Entity {{id: $source}}) WHERE {_vis('a')} {bind_b}"
        f"MATCH p = (a){_step(types, directed=True, extra='r.first_seen IS NOT NULL')}"
        f"{{1,{max_hops}}}{end} "
        "WHERE all(i IN range(0, size(r) - 2) WHERE r[i].first_seen <= r[i + 1].first_seen) "
        "  AND all(i IN range(0, size(x) - 1) WHERE NOT x[i] IN x[i + 1..] AND x[i] <> a) "
        "WITH p, reduce(k = '', e IN relationships(p) | k + e.id + '/') AS key "
        f"ORDER BY length(p), key LIMIT $limit RETURN {_PATH_RETURN}",
        source=s, target=t, case_ids=cases, limit=limit)
    return [_path(r) for r in rows]


# --------------------------------------------------------------------------- shared

def shared_connections(*, case_ids: list[int], entity_ids: list[str], min_shared: int = 2,
                       limit: int = 500) -> list[dict[str, Any]]:
    """Entities linked (either direction, any type) to at least ``min_shared`` of
    ``entity_ids``: ``[{"entity": node, "shared_with": [ids], "edges": [...]}]``, most
    shared first, then by id. The given entities themselves are not listed."""
    cases = _case_ids(case_ids)
    ids = _entity_ids(entity_ids, at_least=2)
    min_shared = _int(min_shared, "min_shared", 1, len(ids))
    limit = _int(limit, "limit", 1, MAX_LIMIT)
    if not cases:
        return []
    rows = _read(
        "UNWIND $ids AS gid "
        "MATCH (g:Entity {id: gid}) "
        f"WHERE {_vis('g')} "
        "MATCH (g)-[r]-(x:Entity) "
        f"WHERE NOT x.id IN $ids AND {_vis('r')} AND {_vis('x')} "
        f"WITH x, collect(DISTINCT g.id) AS shared, collect({_edge('r')}) AS edges "
        "WHERE size(shared) >= $min_shared "
        f"RETURN {_node('x')} AS entity, shared, edges "
        "ORDER BY size(shared) DESC, x.id LIMIT $limit",
        ids=ids, case_ids=cases, min_shared=min_shared, limit=limit)
    return [{"entity": _clean(r["entity"]), "shared_with": sorted(r["shared"]),
             "edges": sorted((_clean(e) for e in r["edges"]), key=lambda e: e["id"])}
            for r in rows]


# --------------------------------------------------------------------------- case

def case_subgraph(*, case_ids: list[int], case_id: int,
                  limit: int = 100_000) -> dict[str, Any]:
    """One case's network: its entities, its links, and the other ends of its links
    the actor may see; ``{"nodes", "edges", "truncated"}`` sorted by id. Empty when
    ``case_id`` is not among ``case_ids``. For analysis and export."""
    cases = _case_ids(case_ids)
    if isinstance(case_id, bool) or not isinstance(case_id, int):
        raise ValueError("case_id must be a case id")  # noqa: TRY004
    limit = _int(limit, "limit", 1, 1_000_000)
    if case_id not in cases:
        return {"nodes": [], "edges": [], "truncated": False}
    rows = client.read(
        "MATCH (n:Entity) WHERE $case_id IN n.cases "
        "WITH n ORDER BY n.id LIMIT $limit "
        "CALL (n) { "
        "  OPTIONAL MATCH (n)-[r]-(m:Entity) "
        f"  WHERE $case_id IN r.cases AND {_vis('m')} "
        f"  RETURN collect({_edge('r')}) AS edges, collect({_node('m')}) AS others "
        "} "
        f"RETURN {_node('n')} AS node, edges, others",
        timeout=max(QUERY_TIMEOUT, 120.0), case_id=case_id, case_ids=cases, limit=limit + 1)
    truncated = len(rows) > limit
    rows = rows[:limit]
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[str, dict[str, Any]] = {}
    for rec in rows:
        nodes[rec["node"]["id"]] = _clean(rec["node"])
    for rec in rows:
        for m in rec["others"]:
            nodes.setdefault(m["id"], _clean(m))
        for e in rec["edges"]:
            edges[e["id"]] = _clean(e)
    return {"nodes": sorted(nodes.values(), key=lambda n: n["id"]),
            "edges": sorted(edges.values(), key=lambda e: e["id"]),
            "truncated": truncated}
