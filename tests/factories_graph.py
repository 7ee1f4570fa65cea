"""Test helpers for entities and links: registration, a case team with every kind of
reader, entities made through the real service, and a Neo4j address that refuses.

Call inside an app context (the `app` fixture pushes one).
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import date

import pytest
from flask import Flask
from sqlalchemy import func, select

from taskforce.accounts.models import Agency, User
from taskforce.accounts.permissions import Actor
from taskforce.extensions import db
from taskforce.graph import service
from taskforce.graph.models import CaseEntity, Entity, GraphOutbox, Identifier, Link
from taskforce.graph.synthetic import enter_into_case as synthetic_enter_into_case
from taskforce.investigations import service as cases
from tests.factories import make_agency
from tests.factories_investigations import ensure_registered, make_case, person


def ensure_graph_registered(app: Flask) -> None:
    """Register the investigations and graph blueprints if create_app has not done it."""
    ensure_registered(app)
    if "graph" not in app.blueprints:
        from taskforce import graph

        graph.init_app(app)
    else:  # the timeline source lives in the service module
        import taskforce.graph.service  # noqa: F401


def years_ago(years: int, days: int = 0) -> str:
    """A date of birth `years` ago today (the 28th at the latest, so it always exists),
    minus `days`."""
    from datetime import timedelta

    today = date.today()
    return (date(today.year - years, today.month, min(today.day, 28))
            - timedelta(days=days)).isoformat()


# Fixtures shared by the graph tests (import them by name into a test module) -------------

@pytest.fixture(name="app_environ")
def neo4j_down_environ(app_environ):
    """Import into a test module to run it with Neo4j unreachable (its address refuses
    connections): overrides `app_environ` there."""
    return {**app_environ, "NEO4J_URI": closed_bolt_uri(), "NEO4J_PASSWORD": "unused"}


@pytest.fixture(name="_graph_registered", autouse=True)
def graph_registered(app):
    """Import into a test module: the graph blueprints registered for every test there."""
    ensure_graph_registered(app)


@pytest.fixture(name="team")
def team_fixture(app):
    """Import into a test module: a `team` (make_team) for each test."""
    return make_team()


@pytest.fixture(scope="module")
def graph_app(neo4j_service, tmp_path_factory):
    """An app on the real Neo4j only (SQLite beside it, no db_backend parametrisation),
    for the projection writer and the Cypher queries; the schema ensured once."""
    from taskforce import create_app
    from taskforce.graph import client, projection

    workdir = tmp_path_factory.mktemp("graph")
    app = create_app(environ={
        "TASKFORCE_ENV": "test",
        "TASKFORCE_INSTANCE": str(workdir / "instance"),
        "SECRET_KEY": "test-only-secret-key-not-for-production",
        "DATABASE_URL": f"sqlite:///{workdir / 'app.db'}",
        **neo4j_service.env(),
    })
    with app.app_context():
        projection.ensure_schema()
    yield app
    client.close(app)


@pytest.fixture()
def graph(graph_app):
    """An app context on an empty graph (emptied again afterwards)."""
    from taskforce.graph import projection

    with graph_app.app_context():
        projection.clear()
        yield
        projection.clear()


def load_rows(entities: list[dict], links: list[dict]) -> None:
    """Write projection rows straight into Neo4j (entities first)."""
    from taskforce.graph import projection

    projection.upsert_entities(entities)
    projection.upsert_links(links)


SYNTHETIC_ACCOUNT_KINDS = {"bank": "bank_account", "cash_app": "online_account",
                           "crypto": "crypto_wallet", "social": "online_account",
                           "email": "email"}


def synthetic_rows(network, case_id: int, *,
                   confidence: float = 1.0) -> tuple[list[dict], list[dict]]:
    """A synthetic network (taskforce.graph.synthetic) as projection rows, its kinds in
    the database's words, every entity and link in `case_id`."""
    def kind(e) -> str:
        if e.kind == "account":
            return SYNTHETIC_ACCOUNT_KINDS[e.props["account_type"]]
        return "organization" if e.kind == "business" else e.kind

    entities = [{"id": e.id, "kind": kind(e), "label": e.props.get("name") or e.id,
                 "cases": [case_id], "survivor": e.props.get("role") == "victim",
                 "minor": e.id in network.minors} for e in network.entities.values()]
    links = [{"id": lk.id, "type": lk.type, "source": lk.source, "target": lk.target,
              "cases": [case_id], "first_seen": lk.props["first_seen"],
              "last_seen": lk.props["last_seen"], "confidence": confidence,
              "count": lk.props["count"], "amount": lk.props["amount"]}
             for lk in network.links]
    return entities, links


def closed_bolt_uri() -> str:
    """A bolt:// address on loopback where nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"bolt://127.0.0.1:{port}"


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def counts() -> dict[str, int]:
    return {m.__name__: count(m) for m in (Entity, Identifier, CaseEntity, Link, GraphOutbox)}


def pending_outbox() -> list[GraphOutbox]:
    db.session.expire_all()
    return list(db.session.scalars(select(GraphOutbox).where(GraphOutbox.processed_at.is_(None))
                                   .order_by(GraphOutbox.id)))


@dataclass
class Team:
    """A case and the people around it, one of each kind of reader."""

    case_id: int
    lead_agency: Agency
    partner_agency: Agency  # granted read access
    other_agency: Agency  # not granted
    lead: tuple[User, Actor]
    investigator: tuple[User, Actor]  # on the team
    specialist: tuple[User, Actor]  # victim_specialist on the team
    partner_specialist: tuple[User, Actor]  # victim_specialist of the granted agency
    partner_investigator: tuple[User, Actor]  # investigator of the granted agency
    supervisor: tuple[User, Actor]  # supervisor of the lead agency, not on the team
    outsider: tuple[User, Actor]  # investigator+supervisor of another agency
    outsider_specialist: tuple[User, Actor]  # victim_specialist of another agency


def make_team(*, title: str = "Operation Kestrel") -> Team:
    lead_agency = make_agency()
    partner_agency = make_agency(level="federal")
    other_agency = make_agency()
    lead = person(agency=lead_agency)
    case_id = make_case(lead[1], title=title)
    investigator = person(agency=lead_agency)
    specialist = person(agency=lead_agency, roles=("victim_specialist",))
    cases.add_member(actor=lead[1], case_id=case_id, user_id=investigator[0].id,
                     case_role="investigator")
    cases.add_member(actor=lead[1], case_id=case_id, user_id=specialist[0].id,
                     case_role="victim_specialist")
    cases.grant_partner(actor=lead[1], case_id=case_id, agency_id=partner_agency.id,
                        access="read")
    return Team(
        case_id=case_id, lead_agency=lead_agency, partner_agency=partner_agency,
        other_agency=other_agency, lead=lead, investigator=investigator,
        specialist=specialist,
        partner_specialist=person(agency=partner_agency, roles=("victim_specialist",)),
        partner_investigator=person(agency=partner_agency),
        supervisor=person(agency=lead_agency, roles=("supervisor",)),
        outsider=person(agency=other_agency, roles=("investigator", "supervisor")),
        outsider_specialist=person(agency=other_agency, roles=("victim_specialist",)),
    )


def add_phone(actor: Actor, case_id: int, number: str, **kw) -> Entity:
    return service.add_entity(actor=actor, case_id=case_id, kind="phone",
                              identifiers=[("phone", number)], **kw)


def add_person(actor: Actor, case_id: int, name: str, *, role: str | None = None,
               dob: str | None = None, identifiers=(), **props) -> Entity:
    details = {"names": [name], **props}
    if dob:
        details["dob"] = dob
    return service.add_entity(actor=actor, case_id=case_id, kind="person", label=name,
                              identifiers=list(identifiers), props=details, case_role=role)


# A synthetic network entered through the real service (the demo seed does the same)
load_synthetic = synthetic_enter_into_case
