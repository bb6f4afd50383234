"""`flask optouts ...`: the opt-out list from the command line, for scrubbing a campaign's
number list before it is sent (SPEC §11):

    flask optouts check numbers.txt [--receiver 41793026727]   the opted-out ones, one a line
    flask optouts show 38598111                                 a number's entries, as JSON
    flask optouts list [--receiver R] [--limit N]               entries, newest first, as JSON
"""

from __future__ import annotations

import json
from typing import Any, TextIO

import click
from flask.cli import AppGroup

from app.connection import get_redis
from app.optout import lists

group = AppGroup("optouts", help="The opt-out list (STOP/START, SPEC §11).")


def _number(value: str, what: str = "number") -> str:
    number = lists.normalize(value)
    if number is None:
        raise click.BadParameter(f"{value!r} is not a phone number", param_hint=what)
    return number


def _print(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


@group.command("check")
@click.argument("numbers", type=click.File("r"))
@click.option("--receiver", help="opted out of this receiver (default: of any)")
def check(numbers: TextIO, receiver: str | None) -> None:
    """Print the numbers of NUMBERS (one a line, '-' for stdin) that are opted out."""
    given = [line.strip() for line in numbers if line.strip()]
    bad = [n for n in given if lists.normalize(n) is None]
    if bad:
        raise click.ClickException(f"{len(bad)} line(s) are not phone numbers, e.g. {bad[0]!r}")
    scope = _number(receiver, "--receiver") if receiver else None
    for number in lists.check(get_redis(), [lists.normalize(n) or "" for n in given], scope):
        click.echo(number)


@group.command("show")
@click.argument("msisdn")
def show(msisdn: str) -> None:
    _print(lists.lookup(get_redis(), _number(msisdn)))


@group.command("list")
@click.option("--receiver", help="entries that hold for this receiver ('*': every-receiver ones)")
@click.option("--limit", default=50, show_default=True)
def listing(receiver: str | None, limit: int) -> None:
    scope = receiver if receiver in (None, lists.ALL) else _number(receiver, "--receiver")
    _print(lists.find(get_redis(), scope, None, limit))
