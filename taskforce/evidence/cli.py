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
@click.option("--grace-hours", type=click.FloatRange(0), default=None,
              help="Remove unlocked orphaned uploads older than this (default: "
                   "EVIDENCE_ORPHAN_GRACE_HOURS, else 24).")
def sweep_command(grace_hours: float | None) -> None:
    """Re-hash every stored object now (appends VERIFIED to each, raises an integrity
    alert on a mismatch) and remove orphaned uploads; exit 1 on any failure."""
    from datetime import timedelta

    total = db.session.scalar(select(func.count()).select_from(EvidenceItem)
                              .where(EvidenceItem.kind == "digital")) or 0
    db.session.rollback()
    grace = timedelta(hours=grace_hours) if grace_hours is not None else None
    with click.progressbar(length=total, label="Re-hashing evidence", file=sys.stderr) as bar:
        result = tasks.sweep(progress=bar.update, grace=grace)
    click.echo(f"checked {result['checked']}, intact {result['ok']}, "
               f"failed {len(result['failed'])}, alerts raised {result['alerts']}, "
               f"store unavailable {len(result['unavailable'])}, "
               f"orphaned uploads removed {len(result['orphans_removed'])} "
               f"({result['bytes']:,} bytes re-hashed)")
    for failure in result["failed"]:
        click.echo(f"INTEGRITY FAILURE {failure['number']}: {failure['problem']}", err=True)
    for miss in result["unavailable"]:
        what = f"item {miss['item_id']}" if miss["item_id"] is not None else "orphans"
        click.echo(f"not checked ({what}): {miss['message']}", err=True)
    if result["failed"] or result["unavailable"]:
        raise click.exceptions.Exit(1)


@evidence_cli.command("extract-text")
@click.option("--item", "item_ids", type=int, multiple=True,
              help="Only this item (repeatable). Default: every PDF whose text is waiting.")
@click.option("--all", "every_pdf", is_flag=True, help="Every PDF item again, not only waiting.")
def extract_text_command(item_ids: tuple[int, ...], every_pdf: bool) -> None:
    """Extract the text of PDF items now (bounded in time and memory, see extraction.py)."""
    from taskforce.evidence.models import EvidenceText

    if item_ids:
        ids = list(item_ids)
    elif every_pdf:
        ids = list(db.session.scalars(select(EvidenceItem.id).where(
            EvidenceItem.content_type == "application/pdf").order_by(EvidenceItem.id)))
    else:
        ids = list(db.session.scalars(select(EvidenceText.item_id).where(
            EvidenceText.status == "pending").order_by(EvidenceText.item_id)))
    db.session.rollback()
    failed = 0
    with click.progressbar(ids, label="Extracting text", file=sys.stderr) as bar:
        for item_id in bar:
            result = tasks.extract_text.run(item_id)
            if result.get("ok") is False:
                failed += 1
                click.echo(f"\nitem {item_id}: text not extracted: {result['reason']}", err=True)
    click.echo(f"{len(ids)} item(s), text not extracted from {failed}")
