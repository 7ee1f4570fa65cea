"""`flask accounts ...` commands."""
from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pyotp
from sqlalchemy import func, select

from taskforce.accounts import mfa, service
from taskforce.accounts.cli import DEMO_CASE_TITLE, DEMO_USERS
from taskforce.accounts.models import Agency, User, utcnow
from taskforce.accounts.permissions import ROLES
from taskforce.extensions import db
from taskforce.graph.models import CaseEntity
from taskforce.investigations.models import Case
from tests.factories import login, make_user


def test_seed_demo_is_idempotent_and_keeps_its_passwords_private(app, runner, client):
    first = runner.invoke(args=["accounts", "seed-demo"])
    assert first.exit_code == 0, first.output
    path = Path(app.instance_path) / "demo-logins.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "flask --app wsgi accounts totp" in first.output
    second = runner.invoke(args=["accounts", "seed-demo"])
    assert second.exit_code == 0, second.output
    assert db.session.scalar(select(func.count(Agency.id))) == 3
    assert db.session.scalar(select(func.count(User.id))) == len(DEMO_USERS)
    # same accounts, same passwords; the demo case is entered once
    assert first.output.splitlines()[:-1] == second.output.splitlines()[:-1]
    assert "entities and" in first.output and "already there" in second.output
    case = db.session.scalars(select(Case)).one()
    assert case.title == DEMO_CASE_TITLE
    entities = db.session.scalar(select(func.count(CaseEntity.id))
                                 .where(CaseEntity.case_id == case.id))
    assert entities > 50 and f"{entities} entities" in first.output
    survivors = db.session.scalar(select(func.count(CaseEntity.id)).where(
        CaseEntity.case_id == case.id, CaseEntity.role == "victim"))
    assert survivors >= 6  # two controllers, three victims each
    levels = set(db.session.scalars(select(Agency.level)))
    assert levels == {"local", "state", "federal"}
    users = db.session.scalars(select(User)).all()
    assert sorted(r for u in users for r in u.role_names) == sorted(ROLES)
    assert all(u.mfa_enrolled and not u.must_change_password for u in users)
    # The printed password and the TOTP command sign the investigator in.
    line = next(l for l in path.read_text().splitlines() if l.startswith("investigator "))
    password = line.split()[1]
    user = service.find_user(username="investigator")
    login(client, "investigator", password, mfa.decrypt_secret(user.mfa_secret))
    assert client.get("/").status_code == 200


def test_seed_demo_passwords_differ_per_install(app, runner, tmp_path):
    runner.invoke(args=["accounts", "seed-demo"])
    text = (Path(app.instance_path) / "demo-logins.txt").read_text()
    assert "investigator" in text
    import taskforce.accounts.cli as cli_module

    assert "password" not in {u[0] for u in cli_module.DEMO_USERS}
    source = Path(cli_module.__file__).read_text()
    line = next(l for l in text.splitlines() if l.startswith("admin "))
    assert line.split()[1] not in source


def test_seed_demo_is_refused_in_production(app, runner):
    app.config["ENV_NAME"] = "production"
    result = runner.invoke(args=["accounts", "seed-demo"])
    assert result.exit_code != 0 and "development and test only" in result.output


def test_totp_prints_the_current_code(app, runner):
    user, _, secret = make_user()
    result = runner.invoke(args=["accounts", "totp", user.username])
    assert result.exit_code == 0
    assert result.output.split()[0] in {pyotp.TOTP(secret).now(),
                                        pyotp.TOTP(secret).at(__import__("time").time() + 5)}


def test_totp_is_refused_in_production(app, runner):
    user, _, _ = make_user()
    app.config["ENV_NAME"] = "production"
    result = runner.invoke(args=["accounts", "totp", user.username])
    assert result.exit_code != 0 and "development or test" in result.output


def test_unlock_from_the_console(app, runner):
    user, _, _ = make_user()
    user.failed_logins = 5
    user.locked_until = utcnow() + timedelta(minutes=30)
    db.session.commit()
    result = runner.invoke(args=["accounts", "unlock", user.username])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert service.find_user(username=user.username).locked_until is None
    assert runner.invoke(args=["accounts", "unlock", "nobody"]).exit_code != 0


def _answers(*lines: str) -> str:
    return "".join(f"{line}\n" for line in lines)


def test_create_admin_prompts_and_refuses_a_weak_password(app, runner):
    weak = runner.invoke(args=["accounts", "create-admin"], input=_answers(
        "chief", "Pat Chief", "chief@lakeport.gov", "Lakeport Police Department",
        "password1234", "password1234", "local", "OH0480500"))
    assert weak.exit_code != 0 and "common or breached" in weak.output
    assert db.session.scalar(select(func.count(Agency.id))) == 0  # nothing half-made
    good = runner.invoke(args=["accounts", "create-admin"], input=_answers(
        "chief", "Pat Chief", "chief@lakeport.gov", "Lakeport Police Department",
        "harbour lights at dusk", "harbour lights at dusk", "local", "OH0480500"))
    assert good.exit_code == 0, good.output
    admin = service.find_user(username="chief")
    assert admin.role_names == ["admin"] and not admin.must_change_password
