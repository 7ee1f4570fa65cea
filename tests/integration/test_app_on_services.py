"""The app itself on the real services: readiness names each one, mail leaves
through the real SMTP server, and a job runs in a real worker."""
from __future__ import annotations

import time
import uuid

import pytest

from scripts import services
from taskforce import create_app
from taskforce.extensions import db

pytestmark = pytest.mark.integration


@pytest.fixture()
def wired_app(app_environ, neo4j_service, s3_service, redis_service, smtp_service):
    environ = dict(app_environ)
    for handle in (neo4j_service, s3_service, redis_service, smtp_service):
        environ.update(handle.env())
    app = create_app(environ=environ)
    with app.app_context():
        db.create_all()
        yield app
        db.session.remove()
        db.engine.dispose()


def test_readyz_reports_every_real_service_up(wired_app):
    resp = wired_app.test_client().get("/readyz")
    body = resp.json
    assert resp.status_code == 200, body
    assert body["ready"] is True
    assert set(body["services"]) == {"database", "neo4j", "evidence_store", "broker", "smtp"}
    for name, state in body["services"].items():
        assert state["status"] == "ok", (name, state)  # real services, not the embedded fallbacks


def test_notification_mail_reaches_the_smtp_server(wired_app, smtp_service):
    from taskforce.mail import send_mail

    marker = uuid.uuid4().hex
    send_mail(to=["specialist@example.org"], subject=f"Deconfliction DC-{marker[:6]}",
              body=f"Sign in to see hit {marker}.")
    [msg] = services.read_mail(smtp_service, match=lambda m: marker[:6] in m["Subject"])
    assert msg["To"] == "specialist@example.org"
    assert msg["From"] == wired_app.config["MAIL_FROM"]
    assert marker in msg.get_content()


def test_mail_job_runs_in_the_real_worker(celery_worker, smtp_service, tmp_path):
    """The worker (its own process, its own app) sends the mail the web app queued in
    the outbox and committed (the app and the worker share the database)."""
    from sqlalchemy import select

    from taskforce import mail
    from taskforce.mail.models import OutgoingMail

    environ = {**celery_worker.environ, "TASKFORCE_INSTANCE": str(tmp_path / "instance")}
    app = create_app(environ=environ)
    assert not app.extensions["celery"].conf.task_always_eager
    with app.app_context():
        db.create_all()
        marker = uuid.uuid4().hex
        (row,) = mail.queue(["Coordinator@example.org"], f"Hit {marker[:8]}", "A new hit.",
                            about="deconfliction_hit")
        db.session.commit()  # the hook hands the row's id to the worker
        [msg] = services.read_mail(smtp_service, match=lambda m: marker[:8] in m["Subject"],
                                   timeout=30)
        assert msg["To"] == "coordinator@example.org"
        deadline = time.monotonic() + 10  # the worker marks it sent just after the relay took it
        while db.session.scalar(select(OutgoingMail.sent_at).where(OutgoingMail.id == row.id)) \
                is None and time.monotonic() < deadline:
            db.session.rollback()
            time.sleep(0.1)
        assert db.session.get(OutgoingMail, row.id).sent_at is not None
        db.session.remove()
