"""Audit: append-only, hash-chained trail of every read and write."""
from flask import Flask


def init_app(app: Flask) -> None:
    pass
