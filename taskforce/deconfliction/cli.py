"""`flask deconfliction ...`: purge expired registrations, show the index's state."""
from __future__ import annotations

import click
from sqlalchemy import func, select

from taskforce.extensions import db


@click.group("deconfliction")
def deconfliction_cli() -> None:
    """The cross-agency target index."""


@deconfliction_cli.command("purge-expired")
def purge_expired() -> None:
    """Delete registrations past their expiry (hits keep their snapshots)."""
    from taskforce.deconfliction import service

    n = service.purge_expired()
    click.echo(f"purged {n} expired registration{'' if n == 1 else 's'}")


@deconfliction_cli.command("status")
def status() -> None:
    """Registrations per key scheme (live and expired), and hits per status."""
    from taskforce.deconfliction import blind, service
    from taskforce.deconfliction.models import Hit, TargetRegistration

    ring = blind.keyring()
    now = service.now()
    click.echo(f"blind index: {'on' if ring.blind else 'off'} (scheme {ring.scheme})")
    rows = db.session.execute(
        select(TargetRegistration.scheme, TargetRegistration.expires_at > now, func.count())
        .group_by(TargetRegistration.scheme, TargetRegistration.expires_at > now)).all()
    for scheme, live, n in sorted(rows, key=lambda r: (r[0], not r[1])):
        note = "" if scheme == ring.scheme else "  (another key or mode: never matches)"
        click.echo(f"registrations {scheme} {'live' if live else 'expired'}: {n}{note}")
    for st, n in db.session.execute(select(Hit.status, func.count()).group_by(Hit.status)):
        click.echo(f"hits {st}: {n}")


@deconfliction_cli.command("purge-operations")
def purge_operations() -> None:
    """Drop the index cells of ended operations and delete those ended 30+ days ago."""
    from taskforce.deconfliction import operations

    out = operations.purge()
    click.echo(f"purged {out['cells']} cells and {out['operations']} operations")
