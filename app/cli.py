"""Command line for operators, as Flask CLI commands (run from the project folder):

    flask routes-check [FILE]            validate a routes file offline
    flask dlq list CONSUMER [--limit N]  dead letters of a consumer, newest first
    flask dlq replay CONSUMER [--id EVT]...   deliver again (all, or the given event ids)
    flask quarantine list [--limit N]    rejected inputs, newest first
    flask quarantine replay ID...        run quarantined requests through ingest again
    flask stats                          queue depths, consumer health, recent bulks
    flask simulate [--messages N ...]    realistic Infobip traffic against a running instance

`python -m app.routes FILE` checks a routes file without starting the app (for when the
configured one is broken and `flask` itself cannot start).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from app import dlq, ingest, quarantine, simulate, store
from app.backlog import backlog
from app.connection import get_redis
from app.errors import ConfigError, NotFound
from app.infobip.client import InfobipClient, InfobipError
from app.routes import check_file

DEV_SECRETS = "var/dev-secrets.json"  # written by `make run` (tools/run.py)

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


@click.command("stats")
@click.option("--bulks", default=5, show_default=True, help="how many recently active bulks to show")
@with_appcontext
def stats(bulks: int) -> None:
    """Queue depths, worker count, consumer health and recent bulk summaries, as JSON."""
    r = get_redis()
    _print({
        "backlog": backlog(r, current_app.config["DRAIN_LANES"]),
        **dlq.consumer_figures(r, current_app.extensions["routes"]),
        "recentBulks": store.recent_bulks(r, bulks),
    })


@click.command("simulate")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="the running instance")
@click.option("--token", envvar="WEBHOOK_TOKEN",
              help="ingest token (default: $WEBHOOK_TOKEN, else the one `make run` generated)")
@click.option("--messages", default=1000, show_default=True, help="messages in the campaign (DLRs)")
@click.option("--bucket", default=100, show_default=True, help="reports per request (maxBucketSize)")
@click.option("--intermediate", default=0.2, show_default=True,
              help="share of messages with an intermediate report")
@click.option("--xml", default=0.2, show_default=True, help="share of buckets sent as XML")
@click.option("--resend", default=0.05, show_default=True, help="share of buckets Infobip sends twice")
@click.option("--mo", default=50, show_default=True, help="inbound messages")
@click.option("--long", "long_ratio", default=0.2, show_default=True, help="share of MO sent as 3 UDH parts")
@click.option("--mo-template", default=None,
              help="send MO by GET on this URL template (as MO_URL_TEMPLATE, path and query)")
@click.option("--rate", default=50.0, show_default=True, help="requests per second")
@click.option("--retry-scale", default=1 / 60, show_default=True,
              help="Infobip's retry waits are minutes; scale them (1/60: a minute becomes a second)")
@click.option("--via-infobip", is_flag=True,
              help="send the campaign through the fake Infobip at INFOBIP_BASE_URL, which pushes the reports")
@with_appcontext  # --via-infobip reads INFOBIP_* from the app's configuration
def simulate_command(url: str, token: str, messages: int, bucket: int, intermediate: float, xml: float,
                     resend: float, mo: int, long_ratio: float, mo_template: str | None, rate: float,
                     retry_scale: float, via_infobip: bool) -> None:
    """Push realistic Infobip traffic at a running instance and print a summary."""
    token = token or _dev_token()
    sent = {}
    if via_infobip:
        sent = {"sentThroughInfobip": _through_infobip(url, token, messages, bucket, intermediate)}
        messages = 0
    calls = [*simulate.campaign(messages, bucket, intermediate, xml, resend),
             *simulate.inbound(mo, long_ratio, mo_template)]
    sender = simulate.Sender(url, token, rate, retry_scale)
    started = time.monotonic()
    with click.progressbar(calls, label=f"{len(calls)} requests to {url}") as bar:
        for call in bar:
            sender.send(call)
    counts = sender.close()
    elapsed = time.monotonic() - started
    _print({"requests": len(calls), "seconds": round(elapsed, 2),
            "requestsPerSecond": round(len(calls) / max(elapsed, 1e-9), 1),
            "answers": dict(sorted(counts.items())), **sent})


def _through_infobip(url: str, token: str, messages: int, bucket: int, intermediate: float) -> dict[str, int]:
    """Real SMS cost money: only an Infobip on this machine (the fake) is sent to."""
    client = InfobipClient.from_config(current_app.config)
    if client is None or urlsplit(client.base_url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise click.ClickException("--via-infobip needs INFOBIP_BASE_URL of the fake Infobip on this machine "
                                   "(make fake-infobip)")
    notify_url = f"{url.rstrip('/')}/infobip/dlr?token={quote(token, safe='')}"
    try:
        return dict(simulate.through_infobip(client, notify_url, messages, bucket, intermediate))
    except InfobipError as err:
        raise click.ClickException(f"sending through Infobip: {err}") from None


def _dev_token() -> str:
    try:
        return json.loads(Path(DEV_SECRETS).read_text())["token"]
    except (OSError, ValueError, KeyError) as err:
        raise click.ClickException("no --token, no $WEBHOOK_TOKEN and no var/dev-secrets.json") from err


COMMANDS = (routes_check, dlq_cli, quarantine_cli, stats, simulate_command)
