"""App-wide commands (`flask settings`)."""
from __future__ import annotations

import click
from flask import Flask

import config


def init_app(app: Flask) -> None:
    @app.cli.command("settings")
    def settings() -> None:
        """Print the table of environment variables (the README carries it)."""
        click.echo(config.markdown_table())
