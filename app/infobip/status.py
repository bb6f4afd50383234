"""Health of each feature that calls Infobip ("pull-reports", "pull-inbox", "logs", "send", ...),
kept in Redis because the calls happen in workers and `/readyz` and `/metrics` are answered by
the web tier.

A feature is `ok`, `auth_failed` (401/403: nothing will work until someone fixes the key) or
`unavailable` (5xx, 429 or no connection after the client's retries). A failed feature carries
`retryAt`: callers ask `blocked_until()` before calling and skip the call until then, so a
wrong key costs one call per backoff step, not a tight loop of 401s. Auth failures back off
exponentially (30 s doubling to 15 min) because they need a human; an unavailable Infobip is
tried again when it said (Retry-After) or after the client's last backoff.

Every call's outcome is also counted (`receiver_infobip_calls_total{feature,outcome}`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis import Redis

from app.clock import utc_text
from app.keys import INFOBIP_CALLS, INFOBIP_FEATURES

AUTH_BACKOFF_FIRST, AUTH_BACKOFF_MAX = 30.0, 900.0
OK, AUTH_FAILED, UNAVAILABLE = "ok", "auth_failed", "unavailable"


def when(epoch: float | None) -> str | None:
    """Epoch seconds as the service writes times (UTC, ISO 8601, `Z`)."""
    return None if epoch is None else utc_text(datetime.fromtimestamp(epoch, UTC))


def get(r: Redis, feature: str) -> dict[str, Any] | None:
    raw = r.hget(INFOBIP_FEATURES, feature)
    return orjson.loads(raw) if raw else None


def count(r: Redis, feature: str, outcome: str) -> None:
    r.hincrby(INFOBIP_CALLS, f"{feature}:{outcome}", 1)


def record_ok(r: Redis, feature: str) -> None:
    """The feature's last call worked. Keeps `since` while it stays ok (one read, one write)."""
    previous = get(r, feature)
    if previous and previous["state"] == OK:
        return
    entry = {"state": OK, "since": time.time(), "failures": 0}
    r.hset(INFOBIP_FEATURES, feature, orjson.dumps(entry))


def record_failure(r: Redis, feature: str, reason: str, retry_at: float | None = None,
                   state: str = UNAVAILABLE) -> dict[str, Any]:
    """Mark the feature failed until `retry_at` (epoch seconds). For `auth_failed` without a
    `retry_at`, the backoff doubles with each consecutive failure. Returns the entry stored."""
    previous = get(r, feature) or {}
    failures = int(previous.get("failures", 0)) + 1
    now = time.time()
    if retry_at is None:
        step = AUTH_BACKOFF_FIRST * 2 ** (failures - 1) if state == AUTH_FAILED else AUTH_BACKOFF_FIRST
        retry_at = now + min(step, AUTH_BACKOFF_MAX)
    since = previous["since"] if previous.get("state") == state else now
    entry = {"state": state, "reason": reason, "since": since, "retryAt": retry_at, "failures": failures}
    r.hset(INFOBIP_FEATURES, feature, orjson.dumps(entry))
    return entry


def blocked_until(r: Redis, feature: str) -> float | None:
    """Epoch seconds before which the feature must not call Infobip, or None: go ahead."""
    entry = get(r, feature)
    if not entry or entry["state"] == OK or entry.get("retryAt") is None:
        return None
    return entry["retryAt"] if entry["retryAt"] > time.time() else None


def clear(r: Redis, feature: str | None = None) -> None:
    """Forget a feature's state (or all): e.g. after the operator fixed the key."""
    if feature is None:
        r.delete(INFOBIP_FEATURES)
    else:
        r.hdel(INFOBIP_FEATURES, feature)


def all(r: Redis) -> dict[str, dict[str, Any]]:
    """Every feature's state as `/readyz` shows it: times as ISO text, `retryAt` only when failed."""
    shown = {}
    for name, raw in sorted(r.hgetall(INFOBIP_FEATURES).items()):
        entry = orjson.loads(raw)
        view = {"state": entry["state"], "since": when(entry["since"])}
        if entry["state"] != OK:
            view.update(reason=entry.get("reason"), retryAt=when(entry.get("retryAt")),
                        failures=entry.get("failures", 1))
        shown[name.decode()] = view
    return shown


def metrics(r: Redis) -> Iterator[Any]:
    """`receiver_infobip_feature_up{feature}` (1 ok, 0 failed) and calls by outcome."""
    up = GaugeMetricFamily("receiver_infobip_feature_up",
                           "Infobip feature working (1) or failed (0, reason in /readyz)", labels=["feature"])
    for name, raw in sorted(r.hgetall(INFOBIP_FEATURES).items()):
        up.add_metric([name.decode()], 1.0 if orjson.loads(raw)["state"] == OK else 0.0)
    yield up
    calls = CounterMetricFamily("receiver_infobip_calls", "Calls to Infobip by feature and outcome",
                                labels=["feature", "outcome"])
    for name, value in sorted(r.hgetall(INFOBIP_CALLS).items()):
        feature, _, outcome = name.decode().rpartition(":")
        calls.add_metric([feature, outcome], float(value))
    yield calls
