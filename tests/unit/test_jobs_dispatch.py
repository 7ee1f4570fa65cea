"""jobs.dispatch, the one way app code sends a job.

Without a broker the job runs here, not through Celery's eager apply, whose "inside a
task" flag (celery._state._task_join_will_block) is one global of the process: two
threads applying at once could leave it set for good, and every result.get() in the
process then failed ("Never call result.get() within a task!"; it broke CI once).
With a broker, the job goes to the broker of the app at hand, not to whichever
Celery app was made last in the process.
"""
from __future__ import annotations

import json
import socket
import threading

import pytest
import redis
from celery import _state as celery_state

from taskforce import create_app
from taskforce.extensions import db
from taskforce.jobs import dispatch, job

THREADS = 6
WAIT = 10  # seconds: a test that would hang fails instead


class Overlap:
    """Makes the eager jobs of THREADS threads overlap in the order that left the flag
    set under Celery's eager apply: the first job in saw the flag clear and is the
    first out; the others, in while it was set, leave after it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entered = 0
        self.all_in = threading.Barrier(THREADS, timeout=WAIT)
        self.first_out = threading.Event()
        self.sessions: list[int] = []


overlap: Overlap | None = None


@job(ignore_result=True)
def overlapping() -> None:
    assert overlap is not None
    with overlap.lock:
        first = overlap.entered == 0
        overlap.entered += 1
        overlap.sessions.append(id(db.session()))
    overlap.all_in.wait()
    if not first:
        assert overlap.first_out.wait(WAIT)


# ignore_result, as the app's jobs that are sent after a commit: no result store is
# waited on (one out of reach is retried for long, not refused)
@job(ignore_result=True)
def double(n: int) -> int:
    return 2 * n


class Refused(Exception):
    pass


@job(ignore_result=True)
def failing(reason: str) -> None:
    raise Refused(reason)


def test_jobs_run_here_from_many_threads_at_once_leave_result_get_working(app):
    global overlap
    overlap = Overlap()
    errors: list[BaseException] = []

    def commit_and_send() -> None:
        try:
            with app.app_context():  # as a request's, in a server thread
                dispatch(overlapping)
                with overlap.lock:
                    if not overlap.first_out.is_set():
                        overlap.first_out.set()  # the first job back is the first out
        except BaseException as exc:  # noqa: BLE001  (reported by the assert below)
            errors.append(exc)

    threads = [threading.Thread(target=commit_and_send) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    assert not errors and overlap.entered == THREADS
    assert len(set(overlap.sessions)) == THREADS  # each job had a session of its own

    assert celery_state.task_join_will_block() is False
    celery = app.extensions["celery"]
    assert celery.tasks[double.name].apply((21,)).get() == 42  # raised when the flag stuck


def test_a_job_run_here_runs_in_a_session_of_its_own_and_returns_nothing(app):
    caller = db.session()
    global overlap
    overlap = Overlap()
    overlap.all_in = threading.Barrier(1)
    assert dispatch(overlapping) is None
    assert overlap.sessions and overlap.sessions[0] != id(caller)
    assert db.session() is caller  # the caller's session is the one it had


def test_the_error_of_a_job_run_here_reaches_the_caller(app):
    with pytest.raises(Refused, match="the file is unreadable"):
        dispatch(failing, ("the file is unreadable",))
    with pytest.raises(Refused, match="as keyword"):
        dispatch(failing, kwargs={"reason": "as keyword"})
    assert celery_state.task_join_will_block() is False


def closed_port() -> int:
    """A port nothing listens on: connecting to it is refused, as with Redis down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestBrokerRefused:
    port = closed_port()

    @pytest.fixture()
    def app_environ(self, app_environ):
        url = f"redis://127.0.0.1:{self.port}/0"
        return {**app_environ, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}

    def test_the_job_goes_to_this_apps_broker_not_the_last_made(self, app, app_environ,
                                                                  tmp_path):
        assert not app.extensions["celery"].conf.task_always_eager
        # an app made later, with no broker: its Celery becomes the process's default
        eager = create_app(environ={**app_environ, "CELERY_BROKER_URL": "",
                                    "CELERY_RESULT_BACKEND": "",
                                    "TASKFORCE_INSTANCE": str(tmp_path / "other")})
        assert eager.extensions["celery"].conf.task_always_eager
        retry = {"max_retries": 0}
        with pytest.raises(Exception, match=str(self.port)):  # refused by this app's Redis
            dispatch(failing, ("never runs here",), retry_policy=retry)
        with pytest.raises(Exception, match=str(self.port)):
            dispatch(double, (1,), queue="alerts", retry_policy=retry)


class TestBroker:
    @pytest.fixture()
    def app_environ(self, app_environ, redis_service):
        return {**app_environ, **redis_service.env()}

    def test_the_job_is_published_to_the_queue_named_and_not_run_here(self, app,
                                                                       redis_service):
        broker = redis.Redis.from_url(redis_service.url)
        queue = "jobs-dispatch-test"
        broker.delete(queue)
        try:
            dispatch(failing, ("runs on a worker",), queue=queue)  # not run here: no raise
            (raw,) = broker.lrange(queue, 0, -1)
        finally:
            broker.delete(queue)
        message = json.loads(raw)
        assert message["headers"]["task"] == failing.name
        assert "runs on a worker" in message["headers"]["argsrepr"]
