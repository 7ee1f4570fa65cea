from __future__ import annotations

import os
import socket

from taskforce.jobs import job


@job()
def ping(token: str) -> dict:
    """Round trip through the broker: answers with who ran it, so a test can tell
    a real worker from an in-process (eager) run."""
    return {"token": token, "pid": os.getpid(), "host": socket.gethostname()}
