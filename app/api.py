"""Query API (SPEC §5) and health probes. Reads state that workers wrote; never writes.

Filters of `GET /api/messages` are named as in Infobip's `/sms/1/logs`, so an operator can
move a query between the two. Lists are newest first, as Infobip's are.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Blueprint, current_app, request
from redis import RedisError

from app import auth, enqueue, handoff, sends, store
from app.backlog import backlog
from app.connection import get_redis
from app.errors import InvalidPayload, NotFound
from app.infobip import status as infobip_status
from app.smpp import status as smpp_status

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


@bp.post("/sends")
def record_sends() -> dict[str, Any]:
    """Infobip's answer to a send request, as the sender got it (SPEC §9.2; app/sends.py).
    All or nothing: one invalid message is a 400 naming it and its fields, and nothing is
    written (a bulk half-recorded would silently miscount what is missing); otherwise every
    message goes to the lanes in one atomic write, answered once it is in Redis. Posting the
    same answer again changes nothing (the drain keeps one send record per message)."""
    request.max_content_length = sends.MAX_BODY_BYTES  # a campaign's answer, not a report bucket
    try:
        body = orjson.loads(request.get_data(cache=False))
    except orjson.JSONDecodeError as err:
        raise InvalidPayload("the body is not JSON", {"_schema": [str(err)]}) from err
    _bulk_id, raw_items = sends.items(body)
    accepted, rejected = handoff.validate("send", raw_items)
    if rejected:
        raise InvalidPayload("invalid messages in the send answer; nothing was recorded", rejected)
    lanes = handoff.by_lane("send", accepted, current_app.config["DRAIN_LANES"])
    enqueue.push(get_redis(), [enqueue.Write(lanes)])
    return {"accepted": len(accepted), "rejected": rejected}


@bp.get("/reconciliation")
def reconciliation() -> dict[str, Any]:
    """The last reconciliation run (SPEC §9.3): when, messages checked, filled from logs, stale;
    and the same figures added up over every run."""
    after = current_app.config.get("RECONCILE_AFTER", 0)
    enabled = bool(after and current_app.config.get("INFOBIP_BASE_URL"))
    return {"enabled": enabled, "reconcileAfter": after, **store.get_reconciliation(get_redis())}


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
        if current_app.config.get("SMPP_HOST"):  # each SMPP bind's state (it does not gate readiness)
            waiting["smpp"] = smpp_status.binds(get_redis(), current_app.config["SMPP_SESSIONS"])
    except RedisError:
        return {"status": "unavailable", "redis": False}, 503
    ready = waiting["workers"] > 0
    body = {"status": "ok" if ready else "no workers", "redis": True, **waiting, **infobip}
    return body, 200 if ready else 503
