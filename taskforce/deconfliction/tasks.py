"""Background jobs of deconfliction. Jobs carry ids, not objects, and are sent
after the commit (service._dispatch); each runs in a session of its own.

* `second_degree_check(registration_ids)`: after registrations commit, ask Neo4j
  whether their entities sit one link from another case's registered entity. It
  first drains the graph outbox (best effort), so links committed in the same
  breath as the identifiers are projected before the question is asked.
* `second_degree_for_entities(entity_ids)`: the same for every live registration
  of these entities; the seam for the graph side to call when links change.
* `purge_expired_registrations()`: daily (Celery beat, see deconfliction.init_app).
"""
from __future__ import annotations

import logging

from taskforce.jobs import job

log = logging.getLogger(__name__)


def _drain_graph_outbox() -> None:
    try:
        from taskforce.graph import outbox

        outbox.drain()
    except Exception:
        log.warning("deconfliction: could not drain the graph outbox first", exc_info=True)


@job(ignore_result=True)
def second_degree_check(registration_ids: list[int]) -> list[str]:
    from taskforce.deconfliction import service

    _drain_graph_outbox()
    return [h.number for h in service.second_degree_check(registration_ids=registration_ids)]


@job(ignore_result=True)
def second_degree_for_entities(entity_ids: list[int]) -> list[str]:
    from taskforce.deconfliction import service

    return [h.number for h in service.second_degree_for_entities(entity_ids=entity_ids)]


@job(ignore_result=True)
def purge_expired_registrations() -> int:
    from taskforce.deconfliction import service

    return service.purge_expired()


@job(ignore_result=True)
def purge_operations() -> dict:
    """Hourly: ended operations stop costing index rows; old ones go entirely."""
    from taskforce.deconfliction import operations

    return operations.purge()
