"""Query API (SPEC §5) and health probes. Reads state that workers wrote; never writes.

Filters of `GET /api/messages` are named as in Infobip's `/sms/1/logs`, so an operator can
move a query between the two. Lists are newest first, as Infobip's are.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, request
from redis import RedisError

from app import auth, store
from app.backlog import backlog
from app.connection import get_redis
from app.errors import InvalidPayload, NotFound
from app.infobip import status as infobip_status

bp = Blueprint("api", __name__, url_prefix="/api")
health = Blueprint("health", __name__)

MAX_LIMIT = 1000


@bp.before_request
def require_api_key() -> None:
    auth.check_api(request, current_app.config)


def _found(value: dict[str, Any] | None, what: str) -> dict[str, Any]:
    if value is None:
        raise NotFound(f"no {what}")
    return value


@bp.get("/messages/<message_id>")
def message(message_id: str) -> dict[str, Any]:
    return _found(store.get_message(get_redis(), message_id), f"message {message_id!r}")


@bp.get("/messages")
def messages() -> dict[str, Any]:
    args = request.args
    results = store.find_messages(
        get_redis(),
        bulk_id=args.get("bulkId") or None,
        to=args.get("to") or None,
        general_status=args.get("generalStatus") or None,
        sent_since=_date_arg("sentSince"),
        sent_until=_date_arg("sentUntil"),
        limit=limit_arg(),
    )
    return {"results": results}


@bp.get("/bulks/<bulk_id>")
def bulk(bulk_id: str) -> dict[str, Any]:
    return _found(store.get_bulk(get_redis(), bulk_id), f"bulk {bulk_id!r}")


@bp.get("/inbound/<message_id>")
def inbound_message(message_id: str) -> dict[str, Any]:
    return _found(store.get_inbound(get_redis(), message_id), f"inbound message {message_id!r}")


@bp.get("/inbound")
def inbound_messages() -> dict[str, Any]:
    args = request.args
    results = store.find_inbound(
        get_redis(),
        sender=args.get("from") or None,
        to=args.get("to") or None,
        keyword=args.get("keyword") or None,
        limit=limit_arg(),
    )
    return {"results": results}


def limit_arg(default: int = 50) -> int:
    """ASCII digits only: str.isdigit() is also true for '²', which int() refuses (a 500)."""
    raw = request.args.get("limit")
    if raw in (None, ""):
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidPayload("bad query", {"limit": [f"an integer from 1 to {MAX_LIMIT}"]})
    return int(raw)


def _date_arg(name: str) -> datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace(" ", "+"))  # a '+' in a URL may arrive as ' '
    except ValueError as err:
        raise InvalidPayload("bad query", {name: ["an ISO 8601 date"]}) from err
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@health.get("/healthz")
def healthz() -> dict[str, Any]:
    """The process is up. Does not touch Redis, so a Redis outage does not restart web pods."""
    return {"status": "ok"}


@health.get("/readyz")
def readyz() -> tuple[dict[str, Any], int]:
    """Ready to take traffic: Redis answers, a worker is alive; with the backlog."""
    try:
        waiting = backlog(get_redis(), current_app.config["DRAIN_LANES"])
        # Infobip's features are shown, not judged: a failed pull must not take the web tier,
        # and with it the push path, out of the load balancer.
        configured = current_app.config.get("INFOBIP_BASE_URL")
        infobip = {"infobip": infobip_status.all(get_redis())} if configured else {}
    except RedisError:
        return {"status": "unavailable", "redis": False}, 503
    ready = waiting["workers"] > 0
    body = {"status": "ok" if ready else "no workers", "redis": True, **waiting, **infobip}
    return body, 200 if ready else 503
