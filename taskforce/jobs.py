"""Celery wired to the Flask app.

With CELERY_BROKER_URL empty (the embedded default) tasks run in-process
(task_always_eager). Tasks carry ids, not objects; `job` gives each run an
app context and a clean session that is rolled back on error. App code sends
jobs with `dispatch` (never .delay/.apply_async: see there why).
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

from celery import Celery, Task, shared_task
from flask import Flask, current_app

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


def no_broker() -> bool:
    """True where jobs run in this process (no broker: development and tests)."""
    celery = current_app.extensions.get("celery")
    return celery is None or bool(celery.conf.task_always_eager)


def dispatch(task: Task, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
             queue: str | None = None, retry_policy: dict[str, Any] | None = None) -> None:
    """Send a job from app code: to this app's own broker (tests build several apps
    with different brokers, so not whichever Celery was made last), or, with no broker,
    run it now in this process, in a fresh app context (a session of its own: the
    caller's is untouched); its error reaches the caller, as eager Celery's did.

    Not through Celery's eager apply (delay/apply_async without a broker): that marks
    "inside a task" in one global of the process (celery._state._task_join_will_block),
    which two threads applying at once can leave set for good; every result.get() in
    the process then fails with "Never call result.get() within a task!"."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    celery = app.extensions.get("celery")
    kwargs = dict(kwargs or {})
    if no_broker():
        run = (celery.tasks[task.name] if celery is not None else task).run
        with app.app_context():
            run(*args, **kwargs)
        return
    options: dict[str, Any] = {}
    if queue:
        options["queue"] = queue
    if retry_policy is not None:
        options["retry_policy"] = retry_policy
    celery.tasks[task.name].apply_async(tuple(args), kwargs, **options)
