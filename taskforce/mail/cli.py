"""`flask mail ...`: the outbox by hand.

    flask mail sweep     send what is due now (what the scheduled sweep does)
    flask mail status    rows still to send, failing, given up
"""
from __future__ import annotations

import click


@click.group("mail")
def mail_cli() -> None:
    """The outgoing mail outbox."""


@mail_cli.command("sweep")
@click.option("--older-than", type=float, default=None,
              help="seconds a row must have waited (default: the sweep's grace period)")
def sweep(older_than: float | None) -> None:
    """Send the unsent rows that are due; delete rows sent long ago."""
    from taskforce.mail import service

    result = service.sweep(older_than=service.SWEEP_AFTER_SECONDS if older_than is None
                           else older_than).as_dict()
    click.echo(f"due {result['due']}: sent {result['sent']}, failed {result['failed']}, "
               f"skipped {result['skipped']}, left for later {result['not_tried']}; "
               f"deleted {result['forgotten']} sent long ago")


@mail_cli.command("status")
def status() -> None:
    """Rows still to send (and failing), given up, and the oldest one's age."""
    from taskforce.mail import service

    s = service.outbox_status()
    click.echo(f"unsent {s['unsent']} (failing {s['failing']}), given up {s['given_up']}, "
               f"oldest unsent {s['oldest_unsent_seconds']} s")
