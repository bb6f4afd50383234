"""The Redis client of the web tier, made once per app by `create_app()`."""

from __future__ import annotations

from flask import current_app
from redis import Redis


def make_client(url: str) -> Redis:
    # Short timeouts: when Redis is unreachable, ingest must answer 503 quickly so Infobip
    # retries later, instead of holding its connection until it gives up on us.
    return Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)


def get_redis() -> Redis:
    return current_app.extensions["redis"]
