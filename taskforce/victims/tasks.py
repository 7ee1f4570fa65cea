"""Background jobs of victims. Jobs carry ids, not objects, and are sent after the
commit (hooks.py); each runs in a session of its own (taskforce.jobs.job).

* `evaluate_links(case_entity_ids, link_ids, entity_ids, bulk)`: raise the survivor and
  minor alerts that these memberships, links and entities call for, and send the
  specialists' emails (service.evaluate).
"""
from __future__ import annotations

from taskforce.jobs import job


@job(ignore_result=True)
def evaluate_links(case_entity_ids: list[int], link_ids: list[int],
                   entity_ids: list[int] | None = None,
                   bulk: list[list] | None = None) -> list[str]:
    """`bulk`: [kind, case_id, floor] for rows written by a bulk insert: that case's
    memberships or links with an id above floor."""
    from taskforce.victims import service

    alerts = service.evaluate(case_entity_ids=case_entity_ids, link_ids=link_ids,
                              entity_ids=entity_ids or (),
                              bulk=[tuple(b) for b in bulk or ()])
    return [a.number for a in alerts]
