"""Event (operation) deconfliction through the service, without HTTP: overlapping
and not overlapping in place and time, expiry and cancelling, the H3 cover never
missing a meeting disc, hits in the shared workflow, notifications, bad input,
who may submit and see, and the purge."""
from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import h3.api.basic_int as h3
import pytest
from sqlalchemy import func, select

from taskforce.audit.models import AuditEvent
from taskforce.deconfliction import geo, operations, service
from taskforce.deconfliction.models import Hit, Notification, Operation, OperationCell
from taskforce.errors import Conflict, Forbidden, Invalid, NotFound
from taskforce.extensions import db
from tests.unit.test_deconfliction_world import build_world, ensure_deconfliction, person

MOTEL = (39.80172, -89.64371)  # a motel in Springfield, IL (fictional operation)
T0 = datetime(2031, 5, 1, 21, 0, tzinfo=UTC)  # the night of the warrant


@pytest.fixture()
def clock(monkeypatch):
    """The service clock, set to noon before the operations (tests move it on)."""
    state = {"now": T0 - timedelta(hours=9)}
    monkeypatch.setattr(service, "now", lambda: state["now"])
    return state


@pytest.fixture()
def mails(monkeypatch):
    """What reaches the SMTP relay through the mail outbox after the commit, recorded
    at send_mail (patched: no relay in unit tests); the real relay is exercised in
    tests/integration/test_deconfliction_operations.py."""
    from taskforce.mail import service as mail

    sent: list[tuple[list[str], str, str]] = []
    monkeypatch.setattr(mail, "send_mail", lambda *, to, subject, body: sent.append(
        (list(to), subject, body)))
    return sent


@pytest.fixture()
def world(app, clock):
    ensure_deconfliction(app)
    return build_world()


def offset(lat: float, lon: float, metres: float, bearing_deg: float) -> tuple[float, float]:
    """The point `metres` away on a great circle, at a bearing (degrees from north)."""
    d = metres / geo.EARTH_RADIUS_M
    b = math.radians(bearing_deg)
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1),
                         math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540) % 360 - 180


def plan(world, who: str, *, at=MOTEL, radius=150, start=T0, hours=3.0, case=None,
         kind="search_warrant", **kw):
    return operations.submit(
        actor=world.people[who].actor, kind=kind, latitude=at[0], longitude=at[1],
        radius_m=radius, starts_at=start.isoformat(),
        ends_at=(start + timedelta(hours=hours)).isoformat(),
        case_id=world.cases[case] if case else None, **kw)


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


# --------------------------------------------------------------------------- the cover

def test_disc_cover_never_misses_a_point_of_the_disc_at_any_latitude():
    rnd = random.Random(5)
    for _ in range(250):
        lat, lon = rnd.uniform(-84, 84), rnd.uniform(-180, 180)
        radius = rnd.choice([10, 75, 400, 2500, 12_000, geo.RADIUS_MAX_M])
        cells = set(geo.disc_cells(lat, lon, radius))
        for j in range(30):
            d = radius * (0.9999 if j % 3 == 0 else rnd.random())
            p = offset(lat, lon, d, rnd.uniform(0, 360))
            assert h3.latlng_to_cell(p[0], p[1], geo.RESOLUTION) in cells, (lat, lon, radius)


def test_disc_cover_stays_small():
    assert len(geo.disc_cells(*MOTEL, 150)) <= 7
    assert len(geo.disc_cells(*MOTEL, geo.RADIUS_MAX_M)) < 600


def test_two_discs_that_meet_always_share_a_cell():
    rnd = random.Random(9)
    for _ in range(300):
        lat, lon = rnd.uniform(-70, 70), rnd.uniform(-180, 180)
        r1, r2 = rnd.choice([10, 300, 3000]), rnd.choice([10, 300, 3000])
        other = offset(lat, lon, (r1 + r2) * 0.999, rnd.uniform(0, 360))
        assert geo.discs_meet(lat, lon, r1, *other, r2)
        assert set(geo.disc_cells(lat, lon, r1)) & set(geo.disc_cells(*other, r2))


# --------------------------------------------------------------------------- conflicts

def test_overlapping_place_and_time_across_agencies_is_one_hit(world, mails):
    first = plan(world, "a", case="A", address="Motel 6, 3125 Wide Track Dr")
    assert first.hits == [] and first.operation.hit_count == 0
    second = plan(world, "b", at=offset(*MOTEL, 200, 45), radius=100,
                  start=T0 + timedelta(hours=2), kind="buy_bust", undercover=True)
    assert len(second.hits) == 1
    hit = second.hits[0]
    assert hit.kind == "operation" and hit.status == "new" and 0 < hit.score < 1
    assert hit.number.startswith("DC-")
    assert hit.a_operation_id == second.operation.id and hit.b_operation_id == first.operation.id
    assert hit.a_operation_kind == "buy_bust" and hit.b_operation_kind == "search_warrant"
    assert hit.b_case_id == world.cases["A"] and hit.a_case_id is None
    assert hit.b_starts_at == T0 and hit.a_starts_at == T0 + timedelta(hours=2)
    assert [e.action for e in hit.events] == ["created"]
    assert db.session.get(Operation, first.operation.id).hit_count == 1
    assert second.operation.hit_count == 1
    # both sides and the coordinator, in the app and by mail, at once
    notified = set(db.session.scalars(select(Notification.user_id).where(
        Notification.hit_id == hit.id)))
    assert notified == {world.people[w].user.id for w in ("a", "b", "coordinator")}
    to = {addr for rcpts, _, _ in mails for addr in rcpts}
    assert to == {world.people[w].user.email for w in ("a", "b", "coordinator")}
    for _, subject, body in mails:
        assert hit.number in subject and f"/deconfliction/hits/{hit.id}" in body
        for secret in ("Motel", "Wide Track", "39.8", "89.6", world.case("A").number,
                       "warrant", "buy", "Springfield", "State Police"):
            assert secret.lower() not in (subject + body).lower()


def test_windows_that_only_touch_do_not_conflict(world):
    plan(world, "a", hours=3)
    assert plan(world, "b", start=T0 + timedelta(hours=3)).hits == []  # starts as A ends
    assert plan(world, "c", start=T0 - timedelta(hours=2), hours=2).hits == []  # ends as A starts
    overlaps_a_only = plan(world, "c", start=T0 + timedelta(hours=2, minutes=59), hours=0.01)
    assert [h.b_agency_id for h in overlaps_a_only.hits] == [world.agencies["spd"].id]


def test_discs_just_apart_do_not_conflict_and_just_touching_do(world):
    plan(world, "a", radius=150)
    apart = offset(*MOTEL, 150 + 100 + 2, 120)
    assert plan(world, "b", at=apart, radius=100).hits == []
    near = offset(*MOTEL, 150 + 100 - 2, 300)
    assert len(plan(world, "c", at=near, radius=100).hits) == 1


def test_far_apart_or_another_day_is_no_conflict(world):
    plan(world, "a")
    assert plan(world, "b", at=(41.8781, -87.6298)).hits == []  # Chicago
    assert plan(world, "b", start=T0 + timedelta(days=1)).hits == []


def test_the_same_agency_does_not_hit_itself(world):
    plan(world, "a")
    assert plan(world, "a2").hits == []  # another Springfield detective
    assert count(Hit) == 0


def test_a_large_disc_finds_a_small_one_kilometres_away(world):
    small = offset(*MOTEL, 18_000, 200)
    plan(world, "a", at=small, radius=20)
    assert len(plan(world, "b", radius=geo.RADIUS_MAX_M).hits) == 1


def test_each_other_agency_gets_its_own_hit_and_a_pair_hits_once(world):
    plan(world, "a")
    plan(world, "b")
    third = plan(world, "c")
    assert len(third.hits) == 2
    assert {h.b_agency_id for h in third.hits} == {world.agencies["spd"].id,
                                                   world.agencies["isp"].id}
    assert count(Hit) == 3


def test_an_ended_operation_no_longer_hits(world, clock):
    plan(world, "a", start=T0, hours=2)
    clock["now"] = T0 + timedelta(hours=2, minutes=30)  # A ended half an hour ago
    # B is under way since an hour before A ended: the windows overlap, A is over
    assert plan(world, "b", start=T0 + timedelta(hours=1), hours=3).hits == []


def test_a_cancelled_operation_no_longer_hits(world):
    first = plan(world, "a")
    operations.cancel(actor=world.people["a"].actor, operation_id=first.operation.id)
    assert db.session.scalar(select(func.count()).select_from(OperationCell).where(
        OperationCell.operation_id == first.operation.id)) == 0
    assert plan(world, "b").hits == []
    with pytest.raises(Conflict):
        operations.cancel(actor=world.people["a"].actor, operation_id=first.operation.id)


def test_find_conflicts_is_an_index_seek_not_a_scan(world):
    plan(world, "a")
    cells = geo.disc_cells(*MOTEL, 150)
    query = select(OperationCell.operation_id).where(
        OperationCell.cell.in_(cells), OperationCell.day.in_(geo.days_touched(T0, T0)),
        OperationCell.ends_at > T0, OperationCell.starts_at < T0, OperationCell.agency_id != 1)
    sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
    plan_rows = db.session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + sql).all()
    detail = " ".join(str(r[-1]) for r in plan_rows)
    assert "USING COVERING INDEX ix_operation_cells_cell_day (cell=? AND day=?" in detail, detail
    assert "SCAN operation_cells" not in detail


def test_a_window_is_stored_under_each_day_it_touches():
    t = datetime(2031, 5, 1, 22, 0, tzinfo=UTC)
    assert geo.days_touched(t, t + timedelta(hours=1)) == geo.days_touched(t, t)
    assert len(geo.days_touched(t, t + timedelta(hours=3))) == 2  # past midnight
    assert len(geo.days_touched(t, t + timedelta(hours=2, minutes=-0.5))) == 1
    midnight = datetime(2031, 5, 2, tzinfo=UTC)
    assert geo.days_touched(t, midnight) == geo.days_touched(t, t)  # ends at midnight


# --------------------------------------------------------------------------- workflow

def test_an_operation_hit_moves_through_the_shared_workflow(world):
    plan(world, "a")
    hit = plan(world, "b").hits[0]
    outsider = world.people["outsider"].actor  # B's agency, on neither operation
    with pytest.raises(NotFound):
        service.acknowledge(actor=outsider, hit_id=hit.id)
    view = service.acknowledge(actor=world.people["a"].actor, hit_id=hit.id)
    assert view.hit.status == "acknowledged" and view.own_sides == ("b",)
    service.start_coordinating(actor=world.people["b"].actor, hit_id=hit.id)
    done = service.resolve(actor=world.people["coordinator"].actor, hit_id=hit.id,
                           resolution="joint_investigation", note="One team goes in.")
    assert done.hit.status == "resolved"
    listed = service.list_hits(actor=world.people["b"].actor, status="resolved")
    assert [v.hit.id for v in listed.items] == [hit.id]


def test_a_supervisor_of_the_agency_is_on_the_side_of_its_operations(world):
    plan(world, "a")
    hit = plan(world, "b").hits[0]
    supervisor = person(world.agencies["isp"], roles=("supervisor",))
    assert [v.hit.id for v in service.list_hits(actor=supervisor.actor).items] == [hit.id]
    other = person(world.agencies["hsi"], roles=("supervisor",))
    assert service.list_hits(actor=other.actor).items == []


# --------------------------------------------------------------------------- access

def test_who_may_submit_and_who_may_open_an_operation(world):
    for role in ("prosecutor", "victim_specialist", "analyst", "admin"):
        who = person(world.agencies["spd"], roles=(role,))
        with pytest.raises(Forbidden):
            operations.submit(actor=who.actor, kind="surveillance", latitude=1, longitude=1,
                              radius_m=100, starts_at=T0.isoformat(),
                              ends_at=(T0 + timedelta(hours=1)).isoformat())
    op = plan(world, "a", case="A").operation
    assert operations.get_operation(actor=world.people["a"].actor, operation_id=op.id).id == op.id
    for who in ("b", "outsider", "coordinator", "a2"):
        with pytest.raises(NotFound):
            operations.get_operation(actor=world.people[who].actor, operation_id=op.id)
    with pytest.raises(NotFound):
        operations.cancel(actor=world.people["b"].actor, operation_id=op.id)
    denied = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "deconfliction.operation.read", AuditEvent.outcome == "denied"))
    assert denied == 4
    # a case of someone else's needs contribute access
    with pytest.raises(NotFound):
        plan(world, "b", case="A")


def test_list_shows_only_ones_own_operations(world):
    mine = plan(world, "a").operation
    plan(world, "b")
    listed = operations.list_operations(actor=world.people["a"].actor)
    assert [o.id for o in listed.items] == [mine.id]
    spd_supervisor = person(world.agencies["spd"], roles=("supervisor",))
    assert [o.id for o in operations.list_operations(actor=spd_supervisor.actor).items] == [
        mine.id]


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("change, field", [
    ({"kind": "raid"}, "kind"),
    ({"latitude": 91}, "latitude"),
    ({"longitude": "west"}, "longitude"),
    ({"latitude": float("nan")}, "latitude"),
    ({"radius_m": 5}, "radius_m"),
    ({"radius_m": 30_000}, "radius_m"),
    ({"starts_at": "2031-05-01T21:00"}, "starts_at"),  # no time zone
    ({"starts_at": "tomorrow"}, "starts_at"),
    ({"ends_at": (T0 - timedelta(hours=1)).isoformat()}, "ends_at"),
    ({"ends_at": (T0 + timedelta(days=15)).isoformat()}, "ends_at"),
    ({"name": "x" * 201}, "name"),
    ({"undercover": "perhaps"}, "undercover"),
    ({"poc": {"name": "Sgt. Rowe"}}, "poc"),
])
def test_bad_input_is_refused_and_nothing_is_written(world, change, field):
    args = {"kind": "search_warrant", "latitude": MOTEL[0], "longitude": MOTEL[1],
            "radius_m": 150, "starts_at": T0.isoformat(),
            "ends_at": (T0 + timedelta(hours=2)).isoformat()} | change
    with pytest.raises(Invalid) as err:
        operations.submit(actor=world.people["a"].actor, **args)
    assert field in err.value.fields
    assert count(Operation) == 0 and count(OperationCell) == 0


def test_an_operation_that_has_already_ended_is_refused(world, clock):
    clock["now"] = T0 + timedelta(hours=5)
    with pytest.raises(Invalid) as err:
        plan(world, "a", hours=3)
    assert "ends_at" in err.value.fields


# --------------------------------------------------------------------------- purge

def test_purge_drops_cells_at_the_end_and_operations_later(world, clock):
    first_id = plan(world, "a").operation.id
    hit = plan(world, "b").hits[0]
    clock["now"] = T0 + timedelta(hours=4)
    assert operations.purge()["operations"] == 0
    assert count(OperationCell) == 0 and count(Operation) == 2
    clock["now"] = T0 + timedelta(days=operations.KEEP_DAYS + 1)
    assert operations.purge()["operations"] == 2
    assert db.session.get(Operation, first_id) is None
    kept = db.session.get(Hit, hit.id)
    assert kept.a_operation_id is None and kept.b_operation_kind == "search_warrant"
    view = service.get_hit(actor=world.people["a"].actor, hit_id=hit.id)
    assert view.own_sides == ("b",)  # still reached as the side's point of contact


# --------------------------------------------------------------------------- dashboard

def test_dashboard_figures(world, clock):
    plan(world, "a")
    hit = plan(world, "b").hits[0]
    plan(world, "c", at=(41.8781, -87.6298))  # no conflict
    clock["now"] = T0 - timedelta(hours=7)
    service.acknowledge(actor=world.people["a"].actor, hit_id=hit.id)
    d = operations.dashboard(actor=world.people["coordinator"].actor)
    assert d.totals["open_hits"] == 1 and d.totals["operations"] == 3
    assert d.totals["operation_hit_rate"] == round(2 / 3, 3)
    assert d.totals["ack_median_hours"] == 2.0
    assert {r["agency"]: r["under_1d"] for r in d.open_by_agency} == {
        "Springfield PD": 1, "Illinois State Police": 1}
    assert len(d.upcoming) == 3
    assert sum(o["in_conflict"] for o in d.upcoming) == 2
    assert not any("address" in o or "case" in o or "name" in o for o in d.upcoming)
    assert sum(w["hits"]["operation"] for w in d.weeks) == 1
    with pytest.raises(Forbidden):
        operations.dashboard(actor=world.people["a"].actor)


def test_purge_command(world, clock, runner):
    plan(world, "a")
    clock["now"] = T0 + timedelta(days=operations.KEEP_DAYS + 1)
    result = runner.invoke(args=["deconfliction", "purge-operations"])
    assert result.exit_code == 0, result.output
    assert "and 1 operations" in result.output
    assert count(Operation) == 0
