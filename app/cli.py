"""Command line for operators, as Flask CLI commands (run from the project folder):

    flask routes-check [FILE]            validate a routes file offline
    flask dlq list CONSUMER [--limit N]  dead letters of a consumer, newest first
    flask dlq replay CONSUMER [--id EVT]...   deliver again (all, or the given event ids)
    flask quarantine list [--limit N]    rejected inputs, newest first
    flask quarantine replay ID...        run quarantined requests through ingest again
"""

from __future__ import annotations

import json
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from app import ingest, quarantine
from app.connection import get_redis
from app.errors import ConfigError, NotFound
from workers import dlq
from workers.routes import check_file

dlq_cli = AppGroup("dlq", help="Dead letters: deliveries that ran out of attempts.")
quarantine_cli = AppGroup("quarantine", help="Rejected inputs, kept for inspection and replay.")


def _print(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


@click.command("routes-check")
@click.argument("path", required=False)
@with_appcontext  # reads the configured path; AppGroup commands get this, plain ones must ask
def routes_check(path: str | None) -> None:
    """Validate a routes file (default: the configured one) and say what it holds."""
    path = path or current_app.config["ROUTES_PATH"]
    if not path:
        raise click.ClickException("no routes file: pass a path or set ROUTES_FILE")
    try:
        click.echo(check_file(path))
    except ConfigError as err:
        raise click.ClickException(err.message) from err


@dlq_cli.command("list")
@click.argument("consumer")
@click.option("--limit", default=50, show_default=True)
def dlq_list(consumer: str, limit: int) -> None:
    _print(dlq.list_dead(get_redis(), consumer, limit))


@dlq_cli.command("replay")
@click.argument("consumer")
@click.option("--id", "ids", multiple=True, help="event id to replay (repeatable); default: all")
def dlq_replay(consumer: str, ids: tuple[str, ...]) -> None:
    moved = dlq.replay_dead(get_redis(), consumer, set(ids) if ids else None)
    click.echo(f"{moved} dead letter(s) of {consumer} queued for delivery again")


@quarantine_cli.command("list")
@click.option("--limit", default=50, show_default=True)
def quarantine_list(limit: int) -> None:
    _print(quarantine.entries(get_redis(), limit))


@quarantine_cli.command("replay")
@click.argument("entry_ids", nargs=-1, required=True)
def quarantine_replay(entry_ids: tuple[str, ...]) -> None:
    """Run quarantined requests through ingest again; fully accepted ones leave the quarantine."""
    # A mistyped id is an error line and a non-zero exit, not a traceback, and does not stop
    # the ids after it.
    answers, missing = [], []
    for entry_id in entry_ids:
        try:
            answers.append(ingest.replay(entry_id))
        except NotFound as err:
            missing.append(err.message)
    _print(answers)
    if missing:
        raise click.ClickException("; ".join(missing))


COMMANDS = (routes_check, dlq_cli, quarantine_cli)
