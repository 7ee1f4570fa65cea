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
@click.option("--batch", default=outbox.DRAIN_BATCH, show_default=True,
              type=click.IntRange(1, 100_000), help="outbox rows read at a time")
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


# --- `flask graph import`: a CSV file into a case, with a progress bar (imports.py) -------

@graph_cli.command("import")
@click.argument("case")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--kind", required=True, type=click.Choice(["cdr", "bank", "generic"]),
              help="call detail records, bank records, or generic CSV through --mapping")
@click.option("--mapping", "mapping_id", type=int, default=None,
              help="column mapping id (generic CSV)")
@click.option("--account", default=None,
              help="bank records: the statement's own account (routing:account or IBAN)")
@click.option("--cell-sites", type=click.Choice(["caller", "callee"]), default=None,
              help="call records: link the caller's or callee's phone to its cell sites")
@click.option("--as", "username", required=True,
              help="the user the import is made as (needs contribute access to the case)")
def import_file(case: str, path: str, kind: str, mapping_id: int | None, account: str | None,
                cell_sites: str | None, username: str) -> None:
    """Import a CSV file into CASE (its id or number): kept as evidence, then loaded."""
    from pathlib import Path

    from taskforce.accounts.models import User
    from taskforce.errors import DomainError
    from taskforce.graph import imports
    from taskforce.investigations.models import Case

    user = db.session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None or not user.active:
        raise click.ClickException(f"no active user {username!r}")
    case_id: int | str = case
    if not case.isdigit():
        found = db.session.scalar(select(Case.id).where(Case.number == case))
        if found is None:
            raise click.ClickException(f"no case {case!r}")
        case_id = found
    actor = Actor.for_user(user)
    try:
        with open(path, "rb") as f:
            started = imports.start_import(actor=actor, case_id=case_id, stream=f,
                                           kind=kind, filename=Path(path).name,
                                           mapping_id=mapping_id, account=account,
                                           cell_sites=cell_sites, dispatch=False)
    except DomainError as err:
        fields = "; ".join(f"{k}: {' '.join(v) if isinstance(v, list) else v}"
                           for k, v in err.fields.items())
        raise click.ClickException(err.message + (f" ({fields})" if fields else "")) from None
    run = started.run
    click.echo(started.message)
    if not started.created and run.status != "queued":
        return
    run_id, size = run.id, run.size
    with click.progressbar(length=size, label=f"import {run_id}", show_percent=True) as bar:
        seen = [0]

        def advance(done: int, total: int) -> None:
            bar.update(done - seen[0])
            seen[0] = done

        run = imports.run(run_id, progress=advance)
    if run.status != "done":
        raise click.ClickException(f"import {run_id} failed: {run.error}")
    click.echo(f"import {run_id} done: {run.rows_read} rows read, {run.rows_loaded} loaded, "
               f"{run.rows_bad} bad, {run.rows_skipped} with nothing to link; "
               f"{run.entities_created} entities created, {run.entities_attached} attached, "
               f"{run.links_created} links created")
    for bad in (run.bad_rows or [])[:20]:
        click.echo(f"  line {bad['line']}: {bad['reason']}", err=True)
    if run.rows_bad > 20:
        click.echo(f"  ... and {run.rows_bad - 20} more bad rows (see the import's page)",
                   err=True)
