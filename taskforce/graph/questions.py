"""Graph questions, asked of Neo4j and limited to what the actor may read.

Read-only (service.py is the one place that changes state). Each function loads its
scope through the one access check (every case the actor may read, or the one named
case via `get_case_or_404`), asks queries.py / analysis.py with those case ids, shows
every node as the database says it for this reader (schemas.graph_nodes: per-case
labels, survivor pseudonyms, shields, the minor flag derived today), and audits the
question. Bad arguments are Invalid (422) naming the parameter; the graph engine down
is Unavailable (503) with a clear message, found out at once rather than after the
driver's 30 s of retries.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from taskforce.accounts.permissions import Actor
from taskforce.audit import service as audit
from taskforce.errors import Invalid, Unavailable
from taskforce.extensions import db
from taskforce.graph import analysis, outbox, policy, queries, schemas
from taskforce.graph.models import Link
from taskforce.investigations.models import Case
from taskforce.investigations.service import READ, get_case_or_404
from taskforce.validation import FieldErrors as _Errors

QUESTIONS = ("expand", "shortest_path", "all_shortest_paths", "time_paths", "shared",
             "network", "key_players", "communities")
_PARAM_NAMES = ("entity_ids", "entity_id", "hops", "kinds", "link_types", "since", "until",
                "min_confidence", "limit", "source", "target", "max_hops", "min_shared", "top",
                "method", "resolution", "case_id")


def _scope(actor: Actor, case_id: Any, question: str) -> tuple[list[int], Case | None]:
    if case_id not in (None, ""):
        case = get_case_or_404(actor=actor, case_id=case_id, action=READ,
                               attempt=f"graph.{question}")
        return [case.id], case
    return policy.readable_case_ids(actor), None


def _flat(values: Any) -> list[str] | None:
    """A list from repeated parameters and/or comma-separated text; None when absent."""
    if values in (None, "", []):
        return None
    if isinstance(values, (str, int)):
        values = [values]
    out = [p.strip() for v in values for p in str(v).split(",") if p.strip()]
    return out or None


def _node_ref(errors: _Errors, name: str, value: Any) -> str | None:
    number = errors.integer(name, value)
    return None if number is None else outbox.entity_node_id(number)


def _node_refs(errors: _Errors, name: str, values: Any) -> list[str]:
    refs = []
    for v in _flat(values) or []:
        ref = _node_ref(errors, name, v)
        if ref is not None:
            refs.append(ref)
    if not refs and not errors.fields.get(name):
        errors.add(name, "Give at least one entity id.")
    return refs


def _ask(call, **kwargs):
    """Run one graph question: bad arguments -> Invalid naming the parameter; the graph
    engine down or failing -> Unavailable (503) with a clear message."""
    from neo4j.exceptions import DriverError, Neo4jError

    from taskforce.graph import client

    try:  # fail fast: a managed transaction would retry an unreachable server for 30 s
        client.driver().verify_connectivity()
    except Exception as exc:  # unreachable, refused, bad auth: all "not now"
        raise Unavailable("The graph engine is not reachable right now; try again "
                          "shortly.") from exc
    try:
        return call(**kwargs)
    except ValueError as exc:
        message = str(exc)
        head = message.split(":", 1)[0].split(" ", 1)[0]
        field = head if head in _PARAM_NAMES else "arguments"
        raise Invalid(f"Bad graph question: {message}", fields={field: message}) from None
    except (Neo4jError, DriverError) as exc:
        raise Unavailable("The graph engine could not answer right now (it may be down or "
                          "the question took too long); try again shortly.") from exc


def _present(actor: Actor, case_ids: list[int], result: dict[str, Any]) -> dict[str, Any]:
    """Nodes and edges of an answer as this reader sees them (database ids, per-case
    labels, redaction); anything the database no longer holds is dropped."""
    node_ids: set[int] = set()
    link_ids: set[int] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "kind" in value and "id" in value and "type" not in value:
                node_ids.add(_db_id(value["id"]))
            elif "type" in value and "source" in value:
                link_ids.add(_db_id(value["id"]))
                node_ids.update({_db_id(value["source"]), _db_id(value["target"])})
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(result)
    node_ids.discard(-1)
    nodes = schemas.graph_nodes(node_ids, actor=actor, case_ids=case_ids)
    link_cases = dict(db.session.execute(
        select(Link.id, Link.case_id).where(Link.id.in_(sorted(link_ids)),
                                            Link.case_id.in_(case_ids))).all()) \
        if link_ids else {}

    def node(d: dict) -> dict | None:
        return nodes.get(_db_id(d["id"]))

    def edge(d: dict) -> dict | None:
        lid, s, t = _db_id(d["id"]), _db_id(d["source"]), _db_id(d["target"])
        if lid not in link_cases or s not in nodes or t not in nodes:
            return None
        return {**d, "id": lid, "source": s, "target": t, "case_id": link_cases[lid]}

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            if "kind" in value and "id" in value and "type" not in value:
                shown = node(value)
                return None if shown is None else {
                    **shown, **{k: v for k, v in value.items()
                                if k in ("degree", "betweenness", "pagerank", "rank")}}
            if "type" in value and "source" in value:
                return edge(value)
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [c for c in (convert(v) for v in value) if c is not None]
        return value

    return convert(result)


def _db_id(node_or_link_id: Any) -> int:
    text = str(node_or_link_id)
    try:
        return int(text.split("-", 1)[1]) if "-" in text else int(text)
    except ValueError:
        return -1


def _audit_question(actor: Actor, question: str, case: Case | None, case_ids: list[int],
                    details: dict[str, Any]) -> None:
    audit.record(actor=actor, action=f"graph.{question}", object_type="case" if case else "graph",
                 object_id=case.id if case else None, case_id=case.id if case else None,
                 details={"cases": len(case_ids), **details})
    db.session.commit()


def graph_expand(*, actor: Actor, entity_ids: Any, hops: Any = 1, kinds: Any = None,
                 link_types: Any = None, since: Any = None, until: Any = None,
                 min_confidence: Any = None, limit: Any = 500, case_id: Any = None) -> dict:
    """The neighbourhood of some entities (queries.expand), as this reader sees it."""
    case_ids, case = _scope(actor, case_id, "expand")
    errors = _Errors()
    seeds = _node_refs(errors, "entity_id", entity_ids)
    errors.raise_if_any()
    result = _ask(queries.expand, case_ids=case_ids, entity_ids=seeds, hops=hops,
                  kinds=_flat(kinds), link_types=_flat(link_types), since=since, until=until,
                  min_confidence=min_confidence, limit=limit)
    out = _present(actor, case_ids, result)
    _audit_question(actor, "expand", case, case_ids,
                    {"entities": [_db_id(s) for s in seeds], "hops": hops,
                     "returned": len(out["nodes"])})
    return out


def _pair(errors: _Errors, source: Any, target: Any, *, target_required: bool = True):
    s = _node_ref(errors, "source", source)
    t = _node_ref(errors, "target", target) if target_required or target not in (None, "") \
        else None
    return s, t


def graph_shortest_path(*, actor: Actor, source: Any, target: Any, max_hops: Any = 6,
                        link_types: Any = None, case_id: Any = None) -> dict:
    case_ids, case = _scope(actor, case_id, "shortest_path")
    errors = _Errors()
    s, t = _pair(errors, source, target)
    errors.raise_if_any()
    path = _ask(queries.shortest_path, case_ids=case_ids, source=s, target=t,
                max_hops=max_hops, link_types=_flat(link_types))
    out = _present(actor, case_ids, {"path": path})
    if out["path"] is not None and len(out["path"]["edges"]) != path["length"]:
        out["path"] = None  # a step the database no longer holds: not a path any more
    _audit_question(actor, "shortest_path", case, case_ids,
                    {"source": _db_id(s), "target": _db_id(t), "found": out["path"] is not None})
    return out


def graph_all_shortest_paths(*, actor: Actor, source: Any, target: Any, max_hops: Any = 6,
                             link_types: Any = None, limit: Any = 100,
                             case_id: Any = None) -> dict:
    case_ids, case = _scope(actor, case_id, "all_shortest_paths")
    errors = _Errors()
    s, t = _pair(errors, source, target)
    errors.raise_if_any()
    paths = _ask(queries.all_shortest_paths, case_ids=case_ids, source=s, target=t,
                 max_hops=max_hops, link_types=_flat(link_types), limit=limit)
    out = _present(actor, case_ids, {"paths": paths})
    out["paths"] = [p for p, raw in zip(out["paths"], paths, strict=True)
                    if len(p["edges"]) == raw["length"]]
    _audit_question(actor, "all_shortest_paths", case, case_ids,
                    {"source": _db_id(s), "target": _db_id(t), "returned": len(out["paths"])})
    return out


def graph_time_paths(*, actor: Actor, source: Any, target: Any = None,
                     link_types: Any = None, max_hops: Any = 4, limit: Any = 100,
                     case_id: Any = None) -> dict:
    """Chains of calls or payments whose dates go forward (queries.time_respecting_paths)."""
    case_ids, case = _scope(actor, case_id, "time_paths")
    errors = _Errors()
    s, t = _pair(errors, source, target, target_required=False)
    errors.raise_if_any()
    paths = _ask(queries.time_respecting_paths, case_ids=case_ids, source=s, target=t,
                 link_types=_flat(link_types) or ("PAID", "CALLED"), max_hops=max_hops,
                 limit=limit)
    out = _present(actor, case_ids, {"paths": paths})
    out["paths"] = [p for p, raw in zip(out["paths"], paths, strict=True)
                    if len(p["edges"]) == raw["length"]]
    _audit_question(actor, "time_paths", case, case_ids,
                    {"source": _db_id(s), "target": _db_id(t) if t else None,
                     "returned": len(out["paths"])})
    return out


def graph_shared(*, actor: Actor, entity_ids: Any, min_shared: Any = 2, limit: Any = 500,
                 case_id: Any = None) -> dict:
    case_ids, case = _scope(actor, case_id, "shared")
    errors = _Errors()
    ids = _node_refs(errors, "entity_id", entity_ids)
    errors.raise_if_any()
    shared = _ask(queries.shared_connections, case_ids=case_ids, entity_ids=ids,
                  min_shared=min_shared, limit=limit)
    for row in shared:
        row["shared_with"] = [_db_id(i) for i in row["shared_with"]]
    out = _present(actor, case_ids, {"shared": shared})
    out["shared"] = [r for r in out["shared"] if r.get("entity")]
    _audit_question(actor, "shared", case, case_ids,
                    {"entities": [_db_id(i) for i in ids], "returned": len(out["shared"])})
    return out


def graph_network(*, actor: Actor, case_id: Any, limit: Any = 5000) -> dict:
    """A case's whole network from the graph engine (for the first drawing of the page)."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ, attempt="graph.network")
    case_ids = policy.readable_case_ids(actor)
    result = _ask(queries.case_subgraph, case_ids=case_ids, case_id=case.id, limit=limit)
    out = _present(actor, case_ids, result)
    _audit_question(actor, "network", case, case_ids, {"returned": len(out["nodes"])})
    return out


def graph_key_players(*, actor: Actor, case_id: Any, top: Any = 10) -> dict:
    """Degree, betweenness and PageRank on the case network (analysis.py, igraph)."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ,
                           attempt="graph.key_players")
    case_ids = policy.readable_case_ids(actor)
    players = _ask(analysis.key_players, case_ids=case_ids, case_id=case.id, top=top)
    out = _present(actor, case_ids, {"key_players": players})
    _audit_question(actor, "key_players", case, case_ids, {"top": top})
    return out


def graph_communities(*, actor: Actor, case_id: Any, method: Any = "leiden",
                      resolution: Any = 1.0) -> dict:
    """Communities (Leiden or Louvain, igraph) of the case network."""
    case = get_case_or_404(actor=actor, case_id=case_id, action=READ,
                           attempt="graph.communities")
    case_ids = policy.readable_case_ids(actor)
    result = _ask(analysis.communities, case_ids=case_ids, case_id=case.id, method=method,
                  resolution=resolution)
    visible = set(schemas.graph_nodes({_db_id(i) for i in result["membership"]}, actor=actor,
                                      case_ids=case_ids))
    groups = [[_db_id(i) for i in members if _db_id(i) in visible]
              for members in result["communities"]]
    groups = [g for g in groups if g]
    out = {"method": result["method"], "resolution": result["resolution"],
           "modularity": result["modularity"], "communities": groups,
           "membership": {str(i): k for k, g in enumerate(groups) for i in g}}
    _audit_question(actor, "communities", case, case_ids,
                    {"method": result["method"], "communities": len(groups)})
    return out
