"""Background jobs of victims. Jobs carry ids, not objects, and are sent after the
commit (hooks.py); each runs in a session of its own (taskforce.jobs.job).

* `run_alert_checks(check_ids)`: the fast path. Run these outbox rows (models.AlertCheck,
  written in the transaction of the links they name): raise the survivor and minor
  alerts they call for and send the specialists' emails (service.run_checks).
* `sweep_alert_checks()`: every SWEEP_EVERY_SECONDS (Celery beat, see `add_to_beat`):
  run the checks still waiting a few seconds after their commit (the fast-path job
  was refused by the broker, or failed), and forget checks done long ago.
* `evaluate_links(...)`: the job of before the outbox, kept so that messages already
  queued by an older version still run.
"""
from __future__ import annotations

from typing import Any

from flask import Flask

from taskforce.jobs import job

SWEEP_EVERY_SECONDS = 2.0
SWEEP_ENTRY = "victims-sweep-alert-checks"


@job(ignore_result=True)
def run_alert_checks(check_ids: list[int], sweep: bool = False) -> list[str]:
    """`sweep`: also run the checks that are due (in-process, where no beat runs)."""
    from taskforce.victims import service

    alerts = service.run_checks(check_ids)
    if sweep:
        alerts += service.sweep().alerts
    return [a.number for a in alerts]


@job(ignore_result=True)
def sweep_alert_checks() -> dict[str, Any]:
    from taskforce.victims import service

    return service.sweep().as_dict()


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


def beat_entry(app: Flask) -> dict[str, Any]:
    """The sweep's Celery beat entry: on the alerts' own queue when there is one, so a
    sweep never waits behind an import either."""
    # a sweep that waited longer than two periods is replaced by the next one
    options: dict[str, Any] = {"expires": 2 * SWEEP_EVERY_SECONDS}
    queue = app.config.get("VICTIMS_ALERT_QUEUE") or None
    if queue:
        options["queue"] = queue
    return {"task": sweep_alert_checks.name, "schedule": SWEEP_EVERY_SECONDS,
            "options": options}

