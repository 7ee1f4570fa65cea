"""Accounts: agencies, users, roles, login, MFA, API tokens."""
from __future__ import annotations

from flask import Flask, request

from taskforce.accounts.permissions import Actor


def load_actor() -> Actor:
    # placeholder until the accounts part lands
    return Actor.anonymous(ip=request.remote_addr, user_agent=request.user_agent.string)


def init_app(app: Flask) -> None:
    pass
