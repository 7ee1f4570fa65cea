"""Racing threads, as requests or workers in separate processes would race."""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from flask import Flask

from taskforce.extensions import db

T = TypeVar("T")


def at_once(app: Flask, work: Callable[[int], T], threads: int, *,
            timeout: float = 60) -> list[T]:
    """Run `work(0)` .. `work(threads - 1)` on as many threads, released together, each in
    an app context of its own (its own session and connection). Returns what each
    returned, in order; an error raised in a thread is raised here."""
    start = threading.Barrier(threads, timeout=timeout)

    def one(n: int) -> T:
        with app.app_context():
            try:
                start.wait()
                return work(n)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(one, n) for n in range(threads)]
        return [future.result(timeout=timeout) for future in futures]
