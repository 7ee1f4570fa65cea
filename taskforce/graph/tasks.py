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
def drain_outbox(batch: int | None = None) -> dict[str, Any]:
    """Project the waiting outbox rows, outbox.DRAIN_BATCH at a time unless told; a
    failure leaves them waiting (never raises for it)."""
    return outbox.drain(batch=batch).as_dict()


# --- Imports (imports.py) -----------------------------------------------------------------

@job(ignore_result=True)
def run_import(run_id: int) -> dict[str, Any] | None:
    """Load a queued import into the case's graph; a bad file or a store failure marks
    the run failed with the reason (never raises for it, so no retry storm)."""
    from taskforce.graph import imports

    imp = imports.run(run_id)
    return None if imp is None else {"id": imp.id, "status": imp.status}
