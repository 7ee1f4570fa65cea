"""`flask audit verify`: re-check the whole hash chain."""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from taskforce.audit import service

audit_cli = AppGroup("audit", help="The append-only audit trail.")


@audit_cli.command("verify")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 100_000),
              help="Events read per query.")
def verify_command(batch_size: int) -> None:
    """Walk the chain in seq order; exit 1 naming the first broken link.

    A hash mismatch means the event was edited; a seq gap or a prev_hash
    mismatch means events were deleted or inserted.
    """
    total = service.chain_length()
    # The bar goes to stderr so stdout carries only the verdict.
    with click.progressbar(length=total, label="Verifying audit trail",
                           file=sys.stderr) as bar:
        result = service.verify_chain(batch_size=batch_size, progress=bar.update)
    if result.ok:
        click.echo(result.message)
        click.echo(f"head: seq {result.head_seq} hash {result.head_hash}")
        return
    click.echo(result.message, err=True)
    click.echo(f"events before it verified: {result.count}", err=True)
    raise click.exceptions.Exit(1)
