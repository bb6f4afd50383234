"""Operations API under /api (same bearer keys): consumers, dead letters, quarantine.

The same operations are on the command line (app/cli.py): `flask dlq ...`, `flask quarantine ...`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request

from app import dlq, ingest, quarantine
from app.api import limit_arg, require_api_key
from app.connection import get_redis
from app.errors import InvalidPayload, NotFound

bp = Blueprint("admin", __name__, url_prefix="/api")
bp.before_request(require_api_key)


def _routes() -> Any:
    return current_app.extensions["routes"]


@bp.get("/consumers")
def consumers() -> dict[str, Any]:
    """Per consumer: delivered, failed attempts, dead letters, pending, oldest pending age."""
    return dlq.consumer_figures(get_redis(), _routes())


@bp.get("/dlq/<consumer>")
def dead_letters(consumer: str) -> dict[str, Any]:
    _known(consumer)
    return {"results": dlq.list_dead(get_redis(), consumer, limit_arg())}


@bp.post("/dlq/<consumer>/replay")
def replay_dead_letters(consumer: str) -> dict[str, Any]:
    """Body `{"ids": ["evt_…"]}` replays those; no body or no ids replays all."""
    _known(consumer)
    ids = _ids()
    return {"replayed": dlq.replay_dead(get_redis(), consumer, set(ids) if ids else None)}


@bp.get("/quarantine")
def quarantined() -> dict[str, Any]:
    return {"results": quarantine.entries(get_redis(), limit_arg())}


@bp.post("/quarantine/<entry_id>/replay")
def replay_quarantined(entry_id: str) -> dict[str, Any]:
    """Body `{"to": "mo"}` sends a delivery-report entry to the MO endpoint (inbound messages
    posted to /infobip/dlr by a misconfigured MO URL); no body: the endpoint it came to."""
    body = _body('{"to": "mo"}')
    return ingest.replay(entry_id, body.get("to") if body else None)


def _known(consumer: str) -> None:
    if consumer not in _routes().consumers:
        raise NotFound(f"no consumer {consumer!r}")


def _body(example: str) -> dict[str, Any] | None:
    """None only when no body was sent. A body must be a JSON object, whatever its Content-Type
    (`curl -d` says form): a malformed, truncated or non-object body, once taken as "no ids",
    replayed every dead letter instead of the few it named."""
    if not request.get_data().strip():
        return None
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise InvalidPayload("bad body", {"_schema": [f"a JSON object: {example}"]})
    return body


def _ids() -> list[str] | None:
    """None (replay all) only when no body was sent."""
    body = _body('{"ids": ["evt_…"]}')
    if body is None:
        return None
    ids = body.get("ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        raise InvalidPayload("bad body", {"ids": ["a list of event ids"]})
    return ids
