"""`flask accounts ...`: first administrator, unlocks, the demo task force, TOTP codes.

Commands act as the console (`Actor.system`): whoever runs them has a shell on
the server. Each still goes through the service, so each is audited.
"""
from __future__ import annotations

import getpass
import os
import time
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from taskforce.accounts import service
from taskforce.accounts.models import AGENCY_LEVELS
from taskforce.accounts.permissions import Actor
from taskforce.errors import DomainError
from taskforce.extensions import db

accounts_cli = AppGroup("accounts", help="Agencies, users, MFA and the demo task force.")

DEMO_FILE = "demo-logins.txt"

# (name, level, ORI). ORIs follow the NCIC shape; they are demo values.
DEMO_AGENCIES = [
    ("Lakeport Police Department", "local", "OH0480500"),
    ("Ohio Bureau of Criminal Investigation", "state", "OHBCI0000"),
    ("FBI Cleveland Field Office", "federal", "OHFBICL00"),
]
# (username, full name, role, index into DEMO_AGENCIES)
DEMO_USERS = [
    ("admin", "Renee Caldwell", "admin", 1),
    ("supervisor", "Sgt. Marcus Webb", "supervisor", 0),
    ("coordinator", "Alicia Brandt", "coordinator", 1),
    ("investigator", "Det. Luis Ortega", "investigator", 0),
    ("analyst", "Priya Raman", "analyst", 2),
    ("prosecutor", "Hannah Greer", "prosecutor", 1),
    ("victim_specialist", "Dana Whitfield", "victim_specialist", 2),
]


DEMO_CASE_TITLE = "Operation Lakeshore (demo)"
DEMO_CASE_TEAM = [("analyst", "analyst"), ("prosecutor", "prosecutor"),
                  ("victim_specialist", "victim_specialist")]


def _seed_demo_case() -> str:
    """A demo case holding a synthetic network (fictional people), entered through the
    graph service as an investigator would, so the graph, deconfliction and survivor
    alerts have something to show. Once only."""
    from sqlalchemy import select

    from taskforce.graph import synthetic
    from taskforce.investigations import service as cases
    from taskforce.investigations.models import Case

    existing = db.session.scalar(select(Case).where(Case.title == DEMO_CASE_TITLE))
    if existing is not None:
        return f"Demo case {existing.number} is already there."
    lead = Actor.for_user(service.find_user(username="investigator"))
    case = cases.open_case(actor=lead, title=DEMO_CASE_TITLE, offences=["sex_trafficking"],
                           summary="A synthetic network: two controllers, their phones, "
                                   "victims, buyers, motels and payment accounts.")
    for username, case_role in DEMO_CASE_TEAM:
        cases.add_member(actor=lead, case_id=case.id, username=username, case_role=case_role)
    network = synthetic.generate(seed=2026, controllers=2, victims_per_controller=3,
                                 phones_per_controller=3, buyers=12)
    ids = synthetic.enter_into_case(lead, case.id, network)
    return (f"Demo case {case.number}: {len(ids)} entities and {len(network.links)} links "
            f"(led by 'investigator').")


def _console() -> Actor:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Actor.system(f"console:{who}")


def _fail(err: DomainError) -> None:
    db.session.rollback()  # as the web error handler does: never a partial write
    detail = "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}"
                       for k, v in err.fields.items())
    raise click.ClickException(err.message + (f" ({detail})" if detail else ""))


@accounts_cli.command("create-admin")
@click.option("--username", prompt=True)
@click.option("--full-name", prompt="Full name")
@click.option("--email", prompt=True)
@click.option("--agency", "agency_name", prompt="Agency name", help="created if it is new")
@click.password_option(help="at least 12 characters; prompted, never echoed")
def create_admin(username: str, full_name: str, email: str, agency_name: str,
                 password: str) -> None:
    """Create a task force administrator (and their agency if it is new)."""
    actor = _console()
    known = {a.name.lower() for a in service.list_agencies(actor=actor)}
    level = ori = None
    if " ".join(agency_name.split()).lower() not in known:
        level = click.prompt("Agency level", type=click.Choice(AGENCY_LEVELS))
        ori = click.prompt("Agency ORI (9 characters, e.g. OH0180000)")
    try:
        user = service.create_first_admin(
            actor=actor, username=username, full_name=full_name, email=email,
            password=password, agency_name=agency_name, agency_level=level, agency_ori=ori)
    except DomainError as err:
        _fail(err)
    click.echo(f"Administrator {user.username} created in {user.agency.name}. "
               "At first sign-in they will set up two-step sign-in (TOTP).")


@accounts_cli.command("unlock")
@click.argument("username")
def unlock(username: str) -> None:
    """Unlock an account locked after failed sign-ins."""
    actor = _console()
    user = service.find_user(username=username)
    if user is None:
        raise click.ClickException(f"No account {username!r}.")
    try:
        service.unlock_user(actor=actor, user_id=user.id)
    except DomainError as err:
        _fail(err)
    click.echo(f"{user.username} is unlocked.")


@accounts_cli.command("totp")
@click.argument("username")
def totp(username: str) -> None:
    """Print the current TOTP code of an account (development and test only)."""
    try:
        code = service.current_totp(actor=_console(), username=username)
    except DomainError as err:
        _fail(err)
    click.echo(f"{code}  (valid for about {30 - int(time.time()) % 30} more seconds)")


def _demo_file() -> Path:
    return Path(current_app.instance_path) / DEMO_FILE


def _read_demo_passwords(path: Path) -> dict[str, str]:
    known: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split(maxsplit=3)
            if len(parts) == 4 and parts[0] in {u[0] for u in DEMO_USERS}:
                known[parts[0]] = parts[1]
    return known


def _write_demo_file(path: Path, rows: list[tuple[str, str, str, str]]) -> str:
    width = max(len(r[1]) for r in rows)
    lines = ["Demo task force sign-ins (generated for this install; development only)", "",
             f"{'username':<18} {'password':<{width}} {'role':<18} agency",
             f"{'-' * 18} {'-' * width} {'-' * 18} {'-' * 30}"]
    lines += [f"{u:<18} {p:<{width}} {r:<18} {a}" for u, p, r, a in rows]
    totp = "Second factor: `.venv/bin/flask --app wsgi accounts totp <username>` prints the code."
    lines += ["", totp]
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Create it private from the start rather than chmod after writing.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
    return text


@accounts_cli.command("seed-demo")
def seed_demo() -> None:
    """Create the demo task force: three agencies and one user per role (idempotent)."""
    if current_app.config["ENV_NAME"] not in ("development", "test"):
        raise click.ClickException("Demo accounts are for development and test only.")
    actor = _console()
    path = _demo_file()
    known = _read_demo_passwords(path)
    try:
        existing = {a.ori: a for a in service.list_agencies(actor=actor)}
        agencies = []
        for name, level, ori in DEMO_AGENCIES:
            agency = existing.get(ori) or service.create_agency(
                actor=actor, name=name, level=level, ori=ori)
            agencies.append(agency)
        rows = []
        for username, full_name, role, index in DEMO_USERS:
            agency = agencies[index]
            user = service.find_user(username=username)
            password = known.get(username)
            if user is None:
                password = service.temporary_password()
                user, _ = service.create_user(
                    actor=actor, username=username, full_name=full_name,
                    email=f"{username.replace('_', '.')}@demo.taskforce.test",
                    agency_id=agency.id, roles=[role], password=password)
            elif password is None or not service.password_matches(user=user, password=password):
                password = service.temporary_password()  # the file was lost: a new one
                service.set_password_for_console(actor=actor, user_id=user.id,
                                                 password=password)
            if not user.mfa_enrolled:
                service.enrol_for_console(actor=actor, user_id=user.id)
            rows.append((username, password, role, agency.name))
        case_note = _seed_demo_case()
    except DomainError as err:
        _fail(err)
    click.echo(_write_demo_file(path, rows), nl=False)
    click.echo(f"(written to {path}, readable by you only)")
    click.echo(case_note)
