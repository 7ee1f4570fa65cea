"""A small task force for the deconfliction tests (helpers, no tests of its own):
three agencies, their users and cases, a coordinator and an outsider."""
from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask

from taskforce.accounts.models import User
from taskforce.accounts.permissions import Actor
from taskforce.extensions import db
from taskforce.investigations.models import Case
from tests.factories import login, make_agency, make_user
from tests.factories_investigations import ensure_registered, make_case


def ensure_deconfliction(app: Flask) -> None:
    """Register the deconfliction blueprints if create_app has not (yet) done it."""
    ensure_registered(app)
    if "deconfliction" not in app.blueprints:
        from taskforce import deconfliction

        deconfliction.init_app(app)


@dataclass
class Person:
    user: User
    password: str
    secret: str | None

    @property
    def actor(self) -> Actor:
        return Actor.for_user(self.user)

    def browser(self, app: Flask):
        client = app.test_client()
        login(client, self.user.username, self.password, self.secret)
        return client


@dataclass
class World:
    agencies: dict[str, object]
    people: dict[str, Person]
    cases: dict[str, int] = field(default_factory=dict)

    def case(self, name: str) -> Case:
        return db.session.get(Case, self.cases[name])


def person(agency, roles=("investigator",)) -> Person:
    user, password, secret = make_user(agency=agency, roles=list(roles))
    return Person(user=user, password=password, secret=secret)


def build_world() -> World:
    spd = make_agency(name="Springfield PD", ori="IL0160000")
    isp = make_agency(name="Illinois State Police", ori="IL0840000", level="state")
    hsi = make_agency(name="HSI Chicago", ori="ILHSI0000", level="federal")
    people = {
        "a": person(spd),  # lead of case A
        "b": person(isp),  # lead of case B
        "c": person(hsi),  # lead of case C
        "a2": person(spd),  # another Springfield detective, lead of case A2
        "coordinator": person(hsi, roles=("coordinator",)),
        "outsider": person(isp),  # same agency as B, on no case
    }
    world = World(agencies={"spd": spd, "isp": isp, "hsi": hsi}, people=people)
    world.cases["A"] = make_case(people["a"].actor, title="Operation Nightjar")
    world.cases["B"] = make_case(people["b"].actor, title="Operation Kestrel")
    world.cases["C"] = make_case(people["c"].actor, title="Operation Heron")
    world.cases["A2"] = make_case(people["a2"].actor, title="Operation Wren")
    return world
