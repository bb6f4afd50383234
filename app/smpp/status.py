"""Each SMPP session's state in Redis: written by the smpp process, read by the web tier.

The process writes `smpp:bind:<n>` on every change and every few seconds while it runs, with a
TTL: a session whose process died shows as "down" once the key expires. `/readyz`, `/metrics` and
the dashboard's overview read it through `binds()`; `since` is when the session entered its state.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from redis import Redis, RedisError

from app import store
from app.keys import SMPP_BIND

log = logging.getLogger(__name__)

TTL = 30  # seconds; the process refreshes every few


def write(r: Redis, session: int, state: dict[str, Any]) -> None:
    """Best effort: a Redis outage must not stop a session (it answers ESME_RSYSERR then)."""
    try:
        r.set(SMPP_BIND.format(session=session), orjson.dumps({**state, "at": time.time()}), ex=TTL)
    except RedisError as err:
        log.warning("smpp bind state not written: %s", err.__class__.__name__)


_written: dict[int, float] = {}


def write_every(r: Redis, session: int, seconds: float, state: dict[str, Any]) -> None:
    """`write`, at most once every `seconds` per session (the receive loop calls it often)."""
    now = time.monotonic()
    if now - _written.get(session, 0.0) >= seconds:
        _written[session] = now
        write(r, session, state)


def binds(r: Redis, sessions: int) -> list[dict[str, Any]]:
    """One entry per configured session: state ("bound", "connecting", "down"), host, counts."""
    raw = store.mget(r, [SMPP_BIND.format(session=n) for n in range(sessions)])  # one per slot on a cluster
    found = []
    for n, blob in enumerate(raw):
        entry = orjson.loads(blob) if blob else {"state": "down", "error": "no report from the smpp process"}
        found.append({"session": n, **entry})
    return found
