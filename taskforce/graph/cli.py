"""`flask graph ...`: the Neo4j projection from the command line.

    flask graph status     outbox rows waiting, and the last error
    flask graph drain      project what the outbox holds (what the scheduled task does)
    flask graph rebuild    clear Neo4j and project every entity and link from the database
"""
from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from taskforce.accounts.permissions import Actor
from taskforce.audit import service as audit
from taskforce.extensions import db
from taskforce.graph import outbox
from taskforce.graph.models import GraphOutbox

graph_cli = AppGroup("graph", help="The Neo4j projection of entities and links.")


@graph_cli.command("status")
def status() -> None:
    """How many outbox rows wait, and why the last attempt failed."""
    waiting = outbox.pending_count()
    click.echo(f"outbox rows waiting: {waiting}")
    failed = db.session.execute(
        select(GraphOutbox.attempts, GraphOutbox.last_error)
        .where(GraphOutbox.processed_at.is_(None), GraphOutbox.attempts > 0)
        .order_by(GraphOutbox.id.desc()).limit(1)).first()
    if failed is not None:
        click.echo(f"last failure (after {failed.attempts} attempts): {failed.last_error}")


@graph_cli.command("drain")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 100_000),
              help="outbox rows per Neo4j transaction")
def drain(batch: int) -> None:
    """Project the outbox rows that wait into Neo4j (idempotent)."""
    result = outbox.drain(batch=batch)
    if result.busy:
        raise click.ClickException("another drain is running; it will take these rows too")
    click.echo(f"processed {result.processed} outbox rows: {result.entities} entities, "
               f"{result.links} links, {result.deleted} removed")
    if not result.ok:
        raise click.ClickException(f"{result.failed} rows wait: {result.error}")


@graph_cli.command("rebuild")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 100_000),
              help="entities or links per Neo4j transaction")
def rebuild(batch: int) -> None:
    """Clear Neo4j and project every entity and link from the database."""
    n_entities, n_links = outbox.totals()
    click.echo(f"rebuilding the graph from {n_entities} entities and {n_links} links")
    try:
        with click.progressbar(length=n_entities + n_links, label="projecting",
                               show_pos=True) as bar:
            result = outbox.rebuild(batch=batch, progress=bar.update)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # noqa: BLE001  (Neo4j down, auth, ...: say so, no traceback)
        raise click.ClickException(f"rebuild failed: {type(exc).__name__}: {exc}") from None
    audit.record_now(actor=Actor.system("flask graph rebuild"), action="graph.rebuild",
                     object_type="graph",
                     details={"entities": result.entities, "links": result.links,
                              "outbox_marked": result.outbox_marked})
    click.echo(f"rebuilt: {result.entities} entities, {result.links} links; "
               f"{result.outbox_marked} outbox rows covered")
