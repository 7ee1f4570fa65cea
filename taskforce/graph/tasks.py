"""Background jobs of the graph: draining the outbox into Neo4j.

Sent by the service after each commit (in-process in the embedded default) and
run every DRAIN_EVERY_SECONDS by Celery beat (see graph.init_app), so rows that
waited while Neo4j was down are projected once it is back.
"""
from __future__ import annotations

from typing import Any

from taskforce.graph import outbox
from taskforce.jobs import job


@job(ignore_result=True)
def drain_outbox(batch: int = 1000) -> dict[str, Any]:
    """Project the waiting outbox rows; a failure leaves them waiting (never raises for it)."""
    return outbox.drain(batch=batch).as_dict()
