"""mail: the one way the app sends email, through a transactional outbox.

    from taskforce import mail
    mail.queue([address], subject, body, about="deconfliction_hit")            # a web request
    mail.queue([address], subject, body, about="survivor_alert", now=True)     # a worker job

`queue` writes one row per address (models.OutgoingMail, table mail_outbox;
addresses lowercased, each once) into the caller's session, in the caller's
transaction: the mail exists if and only if what it is about commits, and a
rollback leaves nothing. Bodies hold no identifier of a case (a number and a link:
the reader signs in to see more); the callers keep it so.

After the commit (a session `after_commit` hook, service.py) the rows are sent at once:
    ``now=True``   by this process, in the hook, through the relay: for a caller already
                   in a worker job whose mail is due within seconds (survivor alerts).
    ``now=False``  (default) by a job, tasks.send_queued, so a web request does not wait
                   for the relay (in-process when no broker is set, as in development).
Every row is claimed before it is sent (so two senders never both send it), then marked
sent; a failure is recorded on the row and retried with backoff (service.py).
`sweep` (Celery beat, every tasks.SWEEP_EVERY_SECONDS) sends what is still unsent a few
seconds after its commit: the process died after the commit, the broker refused the
job, the relay was down. `outbox_status` counts what waits, for a health page.

Delivery is at least once: a sender that dies between the relay's acceptance and
marking the row sent leaves it to be sent again once its claim lapses. A duplicate
notice beats a lost one.

Importing the package puts the table in the metadata, registers the jobs and installs
the session hooks (create_app imports it); `init_app` adds the sweep to the beat
schedule and the `flask mail` commands.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from taskforce.mail import models, service, tasks  # noqa: F401  (table, session hooks, jobs)
from taskforce.mail.service import outbox_status, queue, send, send_mail, sweep

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["init_app", "outbox_status", "queue", "send", "send_mail", "sweep"]

service.install()  # mail queued by any session is sent after its commit, app or script


def init_app(app: Flask) -> None:
    from taskforce import jobs
    from taskforce.mail import cli

    service.install()
    app.cli.add_command(cli.mail_cli)
    jobs.schedule(app, tasks.SWEEP_ENTRY, tasks.beat_entry())
