"""Background jobs of the mail outbox. Jobs carry ids, not messages: the rows are the
messages, committed before any job is asked for (service.queue).

* `send_queued(mail_ids, sweep)`: the fast path of mail queued by a web request: send
  these rows after their commit (service.send); `sweep` also sends what is due
  (in-process, where no beat runs).
* `sweep_outbox()`: every SWEEP_EVERY_SECONDS (Celery beat, `beat_entry`): send what
  is still unsent a few seconds after its commit, and forget rows sent long ago.
"""
from __future__ import annotations

from typing import Any

from taskforce.jobs import job

SWEEP_EVERY_SECONDS = 15.0
SWEEP_ENTRY = "mail-sweep-outbox"


@job(ignore_result=True)
def send_queued(mail_ids: list[int], sweep: bool = False) -> dict[str, Any]:
    from taskforce.mail import service

    sent = service.send(mail_ids).as_dict()
    if sweep:
        service.sweep()
    return sent


@job(ignore_result=True)
def sweep_outbox() -> dict[str, Any]:
    from taskforce.mail import service

    return service.sweep().as_dict()


def beat_entry() -> dict[str, Any]:
    # a sweep that waited longer than two periods is replaced by the next one
    return {"task": sweep_outbox.name, "schedule": SWEEP_EVERY_SECONDS,
            "options": {"expires": 2 * SWEEP_EVERY_SECONDS}}
