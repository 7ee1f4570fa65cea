"""Audit service: the one audit call. (Stub signature; the audit part implements it.)"""
from __future__ import annotations

from typing import Any

from taskforce.accounts.permissions import Actor


def record(*, actor: Actor, action: str, outcome: str = "success", object_type: str | None = None,
           object_id: Any = None, case_id: int | None = None, details: dict | None = None):
    """Append an audit event to the current transaction; the caller commits."""
    return None


def record_now(*, actor: Actor, action: str, outcome: str = "success",
               object_type: str | None = None, object_id: Any = None,
               case_id: int | None = None, details: dict | None = None):
    """Append and commit in a transaction of its own (denied or failed attempts,
    whose own transaction was rolled back)."""
    return None
