"""Fixtures for the real services, started by scripts/services.py.

Each service starts on first use, once per test session, in a folder from
tmp_path_factory, and stops when the session ends. Nothing is mocked: a
service that cannot start FAILS the tests that need it, with the reason and
the tail of its log. TASKFORCE_SKIP_SERVICES="neo4j s3 ..." (or "all") turns
that into a skip, for local debugging only; CI must not set it.

Fixtures: neo4j_service, s3_service, redis_service, postgres_service,
smtp_service (handles from scripts/services.py: .uri/.url/.endpoint ...,
.env() gives the app's settings for the service) and celery_worker (a real
`celery worker` process on the Redis broker; its .environ is the settings to
pass to create_app(environ=...) so the app and the worker share broker, result
backend and database).
"""
from __future__ import annotations

import os
import secrets
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from scripts import services

SKIP_ENV = "TASKFORCE_SKIP_SERVICES"
H = TypeVar("H", bound=services.Handle)

# (name, seconds to ready) of what this session started, for the summary line.
_started: list[tuple[str, float]] = []


def _skipped(name: str) -> bool:
    names = set(os.environ.get(SKIP_ENV, "").replace(",", " ").split())
    return name in names or "all" in names


def _start(name: str, start: Callable[[Path], H], tmp_path_factory: pytest.TempPathFactory) -> H:
    if _skipped(name):
        pytest.skip(f"{name} not started: {SKIP_ENV} names it (local debugging only)")
    workdir = tmp_path_factory.mktemp(name)
    try:
        handle = start(workdir)
    except Exception as e:  # noqa: BLE001  (any failure fails; pytest caches it for the session)
        pytest.fail(f"{name} could not start: {e}", pytrace=False)
    _started.append((name, handle.started_in))
    return handle


@pytest.fixture(scope="session")
def neo4j_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Neo4jHandle]:
    handle = _start("neo4j", services.start_neo4j, tmp_path_factory)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def s3_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.S3Handle]:
    handle = _start("s3", services.start_s3, tmp_path_factory)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.RedisHandle]:
    handle = _start("redis", services.start_redis, tmp_path_factory)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def postgres_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.PostgresHandle]:
    handle = _start("postgres", services.start_postgres, tmp_path_factory)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def smtp_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.SmtpHandle]:
    handle = _start("smtp", lambda d: services.start_smtp(d, python=sys.executable),
                    tmp_path_factory)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def celery_worker(
    redis_service: services.RedisHandle, smtp_service: services.SmtpHandle,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[services.CeleryWorkerHandle]:
    """A real worker (`python -m celery -A taskforce.celery_app worker --pool=solo`)
    consuming from redis_service. Its .environ holds the app settings it runs with."""
    if _skipped("celery"):
        pytest.skip(f"celery worker not started: {SKIP_ENV} names it (local debugging only)")
    workdir = tmp_path_factory.mktemp("celery")
    environ = {
        "TASKFORCE_ENV": "test",
        "TASKFORCE_INSTANCE": str(workdir / "instance"),
        "SECRET_KEY": "test-only-" + secrets.token_hex(16),
        "DATABASE_URL": f"sqlite:///{workdir / 'app.db'}",
        "CELERY_BROKER_URL": redis_service.url,
        "CELERY_RESULT_BACKEND": redis_service.url,
        **smtp_service.env(),  # jobs send mail through the real SMTP server
    }
    try:
        handle = services.start_celery_worker(workdir, broker_url=redis_service.url,
                                              environ=environ, python=sys.executable)
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"celery worker could not start: {e}", pytrace=False)
    _started.append(("celery worker", handle.started_in))
    yield handle
    handle.stop()


def pytest_sessionstart(session: pytest.Session) -> None:
    """A SIGTERM (a CI time-out, `kill`) ends Python without atexit, which
    would leave the servers running: stop them first, then die as before."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # someone else handles it

    def on_term(signum: int, frame: object) -> None:
        services.stop_all()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _started:
        started = ", ".join(f"{name} {secs:.1f}s" for name, secs in _started)
        terminalreporter.write_line(f"services started: {started}")
