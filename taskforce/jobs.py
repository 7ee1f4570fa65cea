"""Celery wired to the Flask app.

With CELERY_BROKER_URL empty (the embedded default) tasks run in-process
(task_always_eager). Tasks carry ids, not objects; `job` gives each run an
app context and a clean session that is rolled back on error.
"""
from __future__ import annotations

import functools
import logging

from celery import Celery, Task, shared_task
from flask import Flask

log = logging.getLogger(__name__)


def init_app(app: Flask) -> Celery:
    """A Celery app per Flask app (tests build several with different brokers);
    tasks are shared_task, so they bind to whichever is current."""
    broker = app.config["CELERY_BROKER_URL"]

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.import_name, task_cls=FlaskTask)
    celery.conf.update(
        broker_url=broker or "memory://",
        result_backend=app.config["CELERY_RESULT_BACKEND"] or ("cache+memory://" if not broker else None),
        task_always_eager=not broker,
        task_eager_propagates=True,
        task_ignore_result=False,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        timezone="UTC",
    )
    celery.set_default()
    app.extensions["celery"] = celery
    return celery


def schedule(app: Flask, name: str, entry: dict) -> None:
    """Add a `celery beat` entry (each part schedules its own periodic jobs)."""
    celery = app.extensions.get("celery")
    if celery is not None:
        celery.conf.beat_schedule = {**(celery.conf.beat_schedule or {}), name: entry}


def job(*task_args, **task_kwargs):
    """@job(...) = celery.task that rolls the session back on error and logs."""

    def deco(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            from taskforce.extensions import db

            try:
                return fn(*args, **kwargs)
            except Exception:
                db.session.rollback()
                log.exception("job %s failed", fn.__name__)
                raise
            finally:
                db.session.remove()

        return shared_task(*task_args, name=f"{fn.__module__}.{fn.__name__}", **task_kwargs)(run)

    return deco
