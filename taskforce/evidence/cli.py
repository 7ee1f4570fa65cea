"""`flask evidence ...`: check the custody ledger, re-hash the stored bytes."""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup
from sqlalchemy import func, select

from taskforce.evidence import ledger, tasks
from taskforce.evidence.models import EvidenceItem
from taskforce.extensions import db

evidence_cli = AppGroup("evidence", help="Evidence: custody ledger and integrity.")


@evidence_cli.command("verify-ledger")
@click.option("--batch-size", default=200, show_default=True, type=click.IntRange(1, 10_000),
              help="Items read per query.")
def verify_ledger_command(batch_size: int) -> None:
    """Walk every item's chain of custody; exit 1 naming the first broken event.

    A hash mismatch means an event was edited; a seq gap, a prev_hash
    mismatch or a head that does not match means events were deleted or
    inserted (or the item's recorded hashes changed).
    """
    total = ledger.item_count(db.session)
    with click.progressbar(length=total, label="Verifying custody ledger",
                           file=sys.stderr) as bar:
        result = ledger.verify_ledger(db.session, batch_size=batch_size, progress=bar.update)
    if result.ok:
        click.echo(result.message)
        return
    click.echo(result.message, err=True)
    raise click.exceptions.Exit(1)


@evidence_cli.command("sweep")
def sweep_command() -> None:
    """Re-hash every stored object now (appends VERIFIED to each); exit 1 on any failure."""
    total = db.session.scalar(select(func.count()).select_from(EvidenceItem)
                              .where(EvidenceItem.kind == "digital")) or 0
    with click.progressbar(length=total, label="Re-hashing evidence", file=sys.stderr) as bar:
        result = tasks.sweep(progress=bar.update)
    click.echo(f"checked {result['checked']}, intact {result['ok']}, "
               f"failed {len(result['failed'])}, store unavailable {len(result['unavailable'])}")
    for failure in result["failed"]:
        click.echo(f"INTEGRITY FAILURE {failure['number']}: {failure['problem']}", err=True)
    for miss in result["unavailable"]:
        click.echo(f"not checked (item {miss['item_id']}): {miss['message']}", err=True)
    if result["failed"] or result["unavailable"]:
        raise click.exceptions.Exit(1)

