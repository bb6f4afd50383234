"""`/api/optouts` (SPEC §11): look a number up, list the list, check many numbers at once, and
opt a number out or back in by hand. Same bearer keys as the rest of /api.

Manual changes are queued through the hand-off and applied by the drain job of the number's
lane, with their `contact.optout`/`contact.optin` event in the same transaction, as a STOP by
SMS is: so the answer is 202, and the change shows a moment later.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, request

from app.api import limit_arg, require_api_key
from app.connection import get_redis
from app.errors import InvalidPayload
from app.optout import lists

bp = Blueprint("optouts", __name__, url_prefix="/api/optouts")
bp.before_request(require_api_key)

MAX_CHECK = 10_000
MAX_NOTE = 200
NUMBER = ["a number: 1 to 20 digits, optionally after a +"]
WHICH = ['say which: {"receiver": "<number>"} or {"all": true}']


def _msisdn(raw: Any, field: str = "msisdn") -> str:
    number = lists.normalize(raw)
    if number is None:
        raise InvalidPayload("bad number", {field: NUMBER})
    return number


@bp.get("/<msisdn>")
def lookup(msisdn: str) -> dict[str, Any]:
    return lists.lookup(get_redis(), _msisdn(msisdn))


@bp.get("")
def listing() -> dict[str, Any]:
    receiver = request.args.get("receiver") or None
    since = request.args.get("since") or None
    moment = None
    if since:
        try:
            parsed = datetime.fromisoformat(since.replace(" ", "+"))
        except ValueError as err:
            raise InvalidPayload("bad query", {"since": ["an ISO 8601 date"]}) from err
        moment = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    scope = receiver if receiver in (None, lists.ALL) else _msisdn(receiver, "receiver")
    return {"results": lists.find(get_redis(), scope, moment, limit_arg())}


def _body() -> dict[str, Any]:
    body = request.get_json(force=True, silent=True) if request.get_data().strip() else None
    if not isinstance(body, dict):
        raise InvalidPayload("bad body", {"_schema": ["a JSON object"]})
    return body


@bp.post("/check")
def check() -> dict[str, Any]:
    """`{"numbers": [...], "receiver"?}` -> `{"optedOut": [...]}`, up to MAX_CHECK numbers."""
    body = _body()
    numbers = body.get("numbers")
    if not isinstance(numbers, list) or len(numbers) > MAX_CHECK:
        raise InvalidPayload("bad body", {"numbers": [f"a list of at most {MAX_CHECK} numbers"]})
    normalized = [lists.normalize(n) for n in numbers]
    bad = {str(i): ["not a number"] for i, n in enumerate(normalized) if n is None}
    if bad:
        raise InvalidPayload("bad body", {"numbers": bad})
    scope = _msisdn(body["receiver"], "receiver") if "receiver" in body else None
    return {"optedOut": lists.check(get_redis(), normalized, scope)}


def _change(msisdn: str, action: str) -> tuple[dict[str, Any], int]:
    """Body: `{"receiver": "<number>"}` or `{"all": true}`, and an optional `note`."""
    number, body = _msisdn(msisdn), _body()
    receiver, every, note = body.get("receiver"), body.get("all", False), body.get("note")
    if not isinstance(every, bool) or every == ("receiver" in body):
        raise InvalidPayload("bad body", {"_schema": WHICH})
    if "note" in body and not (isinstance(note, str) and len(note) <= MAX_NOTE):
        raise InvalidPayload("bad body", {"note": [f"a text of at most {MAX_NOTE} characters"]})
    scope = lists.ALL if every else _msisdn(receiver, "receiver")
    return lists.request_change(get_redis(), current_app.config, number, action, scope, note), 202


@bp.put("/<msisdn>")
def opt_out(msisdn: str) -> tuple[dict[str, Any], int]:
    return _change(msisdn, "optout")


@bp.delete("/<msisdn>")
def opt_in(msisdn: str) -> tuple[dict[str, Any], int]:
    return _change(msisdn, "optin")
