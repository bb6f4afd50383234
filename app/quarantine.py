"""Rejected input is kept, never dropped (SPEC §5.4): raw body, headers, reason, time.

Secrets are removed before anything is stored: credential headers and the `token` query
parameter never reach Redis. The list is capped (`QUARANTINE_MAX`), newest first.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import orjson
from flask import Request
from redis import Redis

from app.clock import now_text
from app.enqueue import add_to_quarantine
from app.keys import QUARANTINE

SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-webhook-token"})
SECRET_PARAMS = frozenset({"token"})


def record(request: Request, reason: str, errors: Any = None, body: bytes | None = None) -> bytes:
    """One quarantine entry for this request, serialized, without secrets."""
    entry: dict[str, Any] = {
        "id": "q_" + uuid.uuid4().hex,
        "at": now_text(),
        "method": request.method,
        "path": request.path,
        "query": [[k, v] for k, v in request.args.items(multi=True) if k.lower() not in SECRET_PARAMS],
        "headers": {k: v for k, v in request.headers.items() if k.lower() not in SECRET_HEADERS},
        "remoteAddr": request.remote_addr,
        "reason": reason,
        "errors": errors,
    }
    return _serialized(entry, body)


def record_input(source: str, path: str, content_type: str, reason: str, errors: Any,
                 body: bytes) -> bytes:
    """One quarantine entry for input that did not come as an HTTP request (a pulled page, an
    SMPP PDU). It is written as the request that would carry it to ingest (`path`, POST, the
    content type), so `flask quarantine replay` runs it through the same endpoint."""
    entry: dict[str, Any] = {
        "id": "q_" + uuid.uuid4().hex,
        "at": now_text(),
        "source": source,
        "method": "POST",
        "path": path,
        "query": [],
        "headers": {"Content-Type": content_type},
        "remoteAddr": None,
        "reason": reason,
        "errors": errors,
    }
    return _serialized(entry, body)


def _serialized(entry: dict[str, Any], body: bytes | None) -> bytes:
    if body:
        try:
            entry["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            entry["bodyBase64"] = base64.b64encode(body).decode("ascii")
    return orjson.dumps(entry, option=orjson.OPT_NON_STR_KEYS, default=str)


def keep(r: Redis, entry: bytes, quarantine_max: int) -> None:
    """Store a whole rejected request. A Redis error propagates: the answer is 503, and
    Infobip retries, so the input is not lost either way."""
    pipe = r.pipeline(transaction=True)
    add_to_quarantine(pipe, entry, quarantine_max)
    pipe.execute()


def entries(r: Redis, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first."""
    return [orjson.loads(raw) for raw in r.lrange(QUARANTINE, 0, limit - 1)]


def find(r: Redis, entry_id: str) -> tuple[bytes, dict[str, Any]] | None:
    for raw in r.lrange(QUARANTINE, 0, -1):
        entry = orjson.loads(raw)
        if entry["id"] == entry_id:
            return raw, entry
    return None


def body_of(entry: dict[str, Any]) -> bytes:
    if "bodyBase64" in entry:
        return base64.b64decode(entry["bodyBase64"])
    return (entry.get("body") or "").encode("utf-8")
