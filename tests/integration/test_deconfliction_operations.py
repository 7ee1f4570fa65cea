"""Operations on the real services: the conflict notice reaches the real SMTP
server for both sides and the coordinator with the deconfliction number and a
link only (no place, kind, agency or case); two operations submitted in the same
instant on PostgreSQL still find each other.

Each test runs on SQLite and on PostgreSQL (the integration parametrisation)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from scripts import services
from taskforce.deconfliction import operations
from taskforce.deconfliction.models import Hit, Operation
from taskforce.extensions import db
from tests.concurrency import at_once
from tests.unit.test_deconfliction_world import build_world, ensure_deconfliction

pytestmark = pytest.mark.integration

MOTEL = (39.80172, -89.64371)


def window(hours_from_now: int = 30, hours: int = 3) -> tuple[str, str]:
    start = (datetime.now(UTC) + timedelta(hours=hours_from_now)).replace(microsecond=0)
    return start.isoformat(), (start + timedelta(hours=hours)).isoformat()


class TestMail:
    @pytest.fixture()
    def app_environ(self, app_environ, smtp_service):
        return {**app_environ, **smtp_service.env(),
                "TASKFORCE_BASE_URL": "https://taskforce.example.gov"}

    def test_conflict_notice_reaches_the_smtp_server_with_no_place_or_case(
            self, app, smtp_service):
        ensure_deconfliction(app)
        world = build_world()
        services.read_mail(smtp_service, count=0, timeout=0)  # start from an empty box
        start, end = window()
        operations.submit(actor=world.people["a"].actor, kind="search_warrant",
                          latitude=MOTEL[0], longitude=MOTEL[1], radius_m=150,
                          starts_at=start, ends_at=end, case_id=world.cases["A"],
                          name="Nightjar entry", address="Motel 6, 3125 Wide Track Dr")
        result = operations.submit(actor=world.people["b"].actor, kind="buy_bust",
                                   latitude=MOTEL[0] + 0.001, longitude=MOTEL[1],
                                   radius_m=150, starts_at=start, ends_at=end,
                                   undercover=True, name="Kestrel meet",
                                   address="Room 112, Red Roof Inn")
        (hit,) = result.hits
        for who in ("a", "b", "coordinator"):
            user = world.people[who].user
            (msg,) = services.read_mail(
                smtp_service, timeout=15,
                match=lambda m, email=user.email: email in str(m["To"]))
            assert str(msg["To"]) == user.email
            body = msg.get_content()
            text = str(msg["Subject"]) + "\n" + body
            assert hit.number in text
            assert f"https://taskforce.example.gov/deconfliction/hits/{hit.id}" in body
            for leak in ("Motel", "Wide Track", "Red Roof", "Nightjar", "Kestrel", "39.8",
                         "89.6", "warrant", "buy", "undercover", world.case("A").number,
                         world.case("A").title, "Springfield", "State Police"):
                assert leak.lower() not in text.lower(), f"{leak!r} in the mail to {who}"


@pytest.mark.postgresql_only  # SQLite has a single writer: the race exists on PostgreSQL
def test_two_operations_submitted_at_once_still_find_each_other(app, db_backend):
    assert db_backend == "postgresql"
    ensure_deconfliction(app)
    world = build_world()
    actors = [world.people["a"].actor, world.people["b"].actor]
    start, end = window()

    def plan(n: int) -> None:
        operations.submit(actor=actors[n], kind="surveillance", latitude=MOTEL[0],
                          longitude=MOTEL[1], radius_m=300, starts_at=start, ends_at=end)

    for _ in range(3):  # a few rounds: the race is a matter of timing
        db.session.remove()
        at_once(app, plan, len(actors), timeout=30)  # re-raises a thread's error
    ops = db.session.scalar(select(func.count()).select_from(Operation))
    hits = db.session.scalar(select(func.count()).select_from(Hit))
    # 6 operations, 3 from each agency: every pair across the agencies is one hit
    assert ops == 6 and hits == 9
