"""The one graph client: a Neo4j driver per app, queries in managed transactions.

Every graph question is asked through `read()`/`write()` so retries on
transient errors (leader switch, deadlock) come from the driver, and so the
need-to-know filter can be added in one place by the graph service.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from taskforce.errors import Unavailable

# The driver (~30 MB resident) is imported on first use, not with the app:
# most requests of the web process never touch the graph.
if TYPE_CHECKING:
    from neo4j import Driver


def driver(app: Flask | None = None) -> Driver:
    app = app or current_app._get_current_object()
    drv = app.extensions.get("neo4j")
    if drv is None:
        from neo4j import GraphDatabase

        cfg = app.config
        drv = GraphDatabase.driver(
            cfg["NEO4J_URI"], auth=(cfg["NEO4J_USER"], cfg["NEO4J_PASSWORD"]),
            connection_timeout=5, max_connection_lifetime=3600,
        )
        app.extensions["neo4j"] = drv
    return drv


def _run(kind: str, cypher: str, params: dict[str, Any], timeout: float | None):
    # A managed transaction takes its timeout from the transaction function
    # (tx.run refuses a Query object): unit_of_work carries it.
    from neo4j import unit_of_work
    from neo4j.exceptions import ServiceUnavailable

    @unit_of_work(timeout=timeout)
    def work(tx):
        return [record.data() for record in tx.run(cypher, params)]

    try:
        with driver().session() as session:
            return getattr(session, f"execute_{kind}")(work)
    except ServiceUnavailable as exc:
        raise Unavailable("The graph engine is not reachable right now; try again shortly.") from exc


def read(cypher: str, timeout: float | None = 30, **params: Any) -> list[dict[str, Any]]:
    return _run("read", cypher, params, timeout)


def write(cypher: str, timeout: float | None = 60, **params: Any) -> list[dict[str, Any]]:
    return _run("write", cypher, params, timeout)


def close(app: Flask) -> None:
    drv = app.extensions.pop("neo4j", None)
    if drv is not None:
        drv.close()
