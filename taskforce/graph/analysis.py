"""Key players and communities of a case's network.

Why python-igraph and not Neo4j's Graph Data Science plugin: GDS is not published on
Maven Central as one plugin jar that loads into Neo4j 5.26 community
(``org.neo4j.gds:proc`` has no 2.x release there; the open-source modules that are
published are libraries, not the assembled plugin, and the official plugin jar is
only a download from Neo4j's own site, which the project's installs cannot reach).
So the case subgraph is extracted through ``queries.case_subgraph`` (need to know
applied there, as for every graph question) and analysed in process with igraph,
whose C core handles a case network (thousands to a few hundred thousand links) in
well under a second.

The graph analysed is the case network as an undirected simple graph: link
direction is ignored (a call or a payment ties two people either way) and parallel
links (a CALLED and a TEXTED between the same phones) count once. The synthetic
ground truth (``synthetic.ground_truth``: controllers are the top betweenness) is
defined on the same graph.

* ``key_players``: degree (distinct neighbours), betweenness (exact, unnormalised:
  each unordered pair counted once) and PageRank (damping 0.85, undirected), ranked
  by betweenness, then PageRank, then id.
* ``communities``: Leiden maximising modularity (igraph ``community_leiden`` with
  ``objective_function="modularity"``, run until stable) or Louvain
  (``community_multilevel``), with the modularity of the result.

Deterministic: vertices are ordered by id and igraph's random numbers come from a
``random.Random(seed)`` for the call (under a lock, as igraph's generator is global).
"""
from __future__ import annotations

import random
import threading
from typing import TYPE_CHECKING, Any

from taskforce.graph import queries

if TYPE_CHECKING:  # igraph is imported on first use: the web process starts without it
    import igraph as ig

__all__ = ["communities", "key_players", "to_igraph"]

DEFAULT_SEED = 20240101
_RNG_LOCK = threading.Lock()


def to_igraph(subgraph: dict[str, Any]) -> tuple[ig.Graph, list[dict[str, Any]]]:
    """An undirected simple igraph Graph of a ``{"nodes", "edges"}`` subgraph, vertices
    in id order; returns the graph and the node dicts in vertex order."""
    import igraph as ig

    nodes = sorted(subgraph["nodes"], key=lambda n: n["id"])
    index = {n["id"]: i for i, n in enumerate(nodes)}
    pairs = set()
    for e in subgraph["edges"]:
        s, t = index.get(e["source"]), index.get(e["target"])
        if s is None or t is None or s == t:
            continue
        pairs.add((min(s, t), max(s, t)))
    g = ig.Graph(n=len(nodes), edges=sorted(pairs), directed=False)
    return g, nodes


def _seeded(seed: int):
    class _Ctx:
        def __enter__(self):
            import igraph as ig

            _RNG_LOCK.acquire()
            ig.set_random_number_generator(random.Random(seed))

        def __exit__(self, *exc):
            import igraph as ig

            ig.set_random_number_generator(random)
            _RNG_LOCK.release()

    return _Ctx()


def key_players(*, case_ids: list[int], case_id: int, top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` entities of a case's network by betweenness (then PageRank, then
    id): each the node dict plus ``degree``, ``betweenness``, ``pagerank`` and ``rank``
    (1 = most central). Empty when the actor may not read the case."""
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 1000:
        raise ValueError("top must be a whole number from 1 to 1000")
    g, nodes = to_igraph(queries.case_subgraph(case_ids=case_ids, case_id=case_id))
    if not nodes:
        return []
    betweenness = g.betweenness(directed=False)
    pagerank = g.pagerank(directed=False, damping=0.85)
    degree = g.degree()
    order = sorted(range(len(nodes)),
                   key=lambda i: (-betweenness[i], -pagerank[i], nodes[i]["id"]))
    return [{**nodes[i], "degree": degree[i], "betweenness": float(betweenness[i]),
             "pagerank": float(pagerank[i]), "rank": r}
            for r, i in enumerate(order[:top], 1)]


def communities(*, case_ids: list[int], case_id: int, method: str = "leiden",
                resolution: float = 1.0, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Communities of a case's network: ``{"method", "resolution", "modularity",
    "membership": {entity id: community}, "communities": [[entity ids], ...]}``,
    communities numbered from 0 by size (largest first), then by their smallest id.

    ``resolution`` 1.0 is plain modularity; lower values favour fewer, larger
    communities (a controller's whole organisation rather than, say, its buyers and
    its household apart), higher values more, smaller ones. ``modularity`` is always
    the plain (resolution 1) modularity of the result."""
    if method not in ("leiden", "louvain"):
        raise ValueError("method must be 'leiden' or 'louvain'")
    if isinstance(resolution, bool) or not isinstance(resolution, (int, float)) \
            or not 0 < resolution <= 10:
        raise ValueError("resolution must be a number above 0 and at most 10")
    g, nodes = to_igraph(queries.case_subgraph(case_ids=case_ids, case_id=case_id))
    if not nodes:
        return {"method": method, "resolution": resolution, "modularity": 0.0,
                "membership": {}, "communities": []}
    with _seeded(seed):
        if method == "leiden":
            clustering = g.community_leiden(objective_function="modularity",
                                            resolution=resolution, n_iterations=-1)
        else:
            clustering = g.community_multilevel(resolution=resolution)
    groups: dict[int, list[str]] = {}
    for i, c in enumerate(clustering.membership):
        groups.setdefault(c, []).append(nodes[i]["id"])
    ordered = sorted((sorted(m) for m in groups.values()), key=lambda m: (-len(m), m[0]))
    membership = {eid: k for k, members in enumerate(ordered) for eid in members}
    modularity = g.modularity([membership[n["id"]] for n in nodes]) if g.ecount() else 0.0
    return {"method": method, "resolution": resolution, "modularity": float(modularity),
            "membership": membership, "communities": ordered}
