"""`GET /metrics` in Prometheus format (prometheus-client).

Two sources, because the service runs as many processes:
- Per web process: requests by endpoint and answer, ingest latency, items accepted and
  rejected. Under gunicorn these use prometheus-client's multiprocess mode
  (`PROMETHEUS_MULTIPROC_DIR`, set up in deploy/gunicorn.conf.py), so every worker's counts
  add up; elsewhere (tests, `flask`) the ordinary in-process registry.
- Read from Redis at scrape time: what workers counted in their own transactions (new and
  duplicate items, processing lag), deliveries per consumer and outcome, dead letters, and
  the backlog (queue depth, oldest queued item, quarantine, long-MO parts pending).
"""

from __future__ import annotations

import functools
import logging
import os
import random
import re
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from app import auth, keys
from app.backlog import backlog
from app.connection import get_redis
from app.infobip import status as infobip_status
from app.keys import CONSUMER_STATS, DEAD_LETTERS, WORKER_COUNTERS, consumer_key
from app.smpp import status as smpp_status

# Decided once, as prometheus-client decides where its values live when it is first imported.
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

bp = Blueprint("metrics", __name__)
log = logging.getLogger("app.requests")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

REQUESTS = Counter("receiver_http_requests", "HTTP requests by endpoint and answer", ["endpoint", "code"])
INGEST_SECONDS = Histogram(
    "receiver_ingest_seconds", "Time to answer an ingest request", ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
ITEMS = Counter("receiver_ingest_items", "Items received, by kind and outcome", ["kind", "outcome"])


# `labels()` looks its child up under a lock on every call: the few children are kept here.
_requests = functools.cache(REQUESTS.labels)
_ingest_seconds = functools.cache(INGEST_SECONDS.labels)
_items = functools.cache(ITEMS.labels)
for _kind in ("dlr", "mo"):  # every count is shown from the start, 0 until something happens
    for _outcome in ("accepted", "rejected"):
        _items(_kind, _outcome)


def request_id(environ: dict[str, Any]) -> str:
    """The caller's X-Request-Id, or a new one."""
    given = environ.get("HTTP_X_REQUEST_ID", "")
    # Echoed in our answer and logs: only a plain token, never CR/LF or other header injection.
    # A request id needs to be unique, not secret: `random` (re-seeded in every forked process)
    # does not make a system call as uuid4 does.
    return given if given and _REQUEST_ID.fullmatch(given) else f"{random.getrandbits(64):016x}"


def observe_end(response: Response) -> Response:
    """Count, time and log every request: one log line each (a successful ingest one at DEBUG),
    path without its query string. The one hook: the time is counted from when the request
    object was made (`app.ReceiverRequest`), which is also when a before-request hook would have
    run."""
    # The request itself, not its proxy: each proxy access is a context-variable lookup, and
    # this hook runs on every request (docs/BENCHMARKS.md, session 4).
    req = request._get_current_object()  # type: ignore[attr-defined]
    now = time.perf_counter()
    duration = now - getattr(req, "started", now)
    rid = request_id(req.environ)
    endpoint = req.url_rule.rule if req.url_rule else "unmatched"
    _requests(endpoint, str(response.status_code)).inc()
    ingest = endpoint.startswith("/infobip/")
    if ingest:
        _ingest_seconds(endpoint).observe(duration)
    response.headers["X-Request-Id"] = rid
    # A report Infobip delivered is counted above and in the state; its line, one per report at
    # campaign speed, is DEBUG (a tenth of a request's instructions, docs/BENCHMARKS.md,
    # session 8). Every other request, and every ingest request not answered 2xx, is INFO.
    level = logging.DEBUG if ingest and response.status_code < 300 else logging.INFO
    if log.isEnabledFor(level):
        log.log(level, "request", extra={"request_id": rid, "method": req.method, "path": req.path,
                                         "status": response.status_code,
                                         "duration_ms": round(duration * 1000, 2)})
    return response


def count_items(kind: str, accepted: int, rejected: int) -> None:
    if accepted:
        _items(kind, "accepted").inc(accepted)
    if rejected:
        _items(kind, "rejected").inc(rejected)


class RedisCollector(Collector):
    """Figures kept in Redis, read at scrape time (they are shared by every process)."""

    def __init__(self, lanes: int, routes: Any, smpp_sessions: int = 0) -> None:
        self.lanes = lanes
        self.routes = routes
        self.smpp_sessions = smpp_sessions

    def collect(self) -> Iterator[Any]:
        r = get_redis()
        counters: dict[str, float] = {}
        for t in keys.tags():  # one hash on a single Redis, one per lane on a cluster
            for k, v in r.hgetall(WORKER_COUNTERS.format(t=t)).items():
                counters[k.decode()] = counters.get(k.decode(), 0.0) + float(v)
        processed = CounterMetricFamily("receiver_processed_items", "Items applied by workers",
                                        labels=["kind", "outcome"])
        for name, value in sorted(counters.items()):
            kind, _, outcome = name.partition(":")
            if kind in ("dlr", "mo", "number"):
                processed.add_metric([kind, outcome], value)
        yield processed
        lag = HistogramMetricFamily("receiver_processing_lag_seconds", "Time from ingest answer to state")
        prefix = "lag_le:"
        buckets = sorted((float(k[len(prefix) :]), v) for k, v in counters.items() if k.startswith(prefix))
        lag.add_metric([], [(str(b), v) for b, v in buckets] + [("+Inf", counters.get("lag_count", 0.0))],
                       counters.get("lag_sum", 0.0))
        yield lag
        deliveries = CounterMetricFamily("receiver_deliveries", "Delivery attempts by consumer and outcome",
                                         labels=["consumer", "outcome"])
        dead = GaugeMetricFamily("receiver_dead_letters", "Dead letters waiting", labels=["consumer"])
        for name, consumer in self.routes.consumers.items():
            if consumer.kind != "http":
                continue
            raw = r.hgetall(CONSUMER_STATS.format(consumer=consumer_key(name)))
            stats = {k.decode(): float(v) for k, v in raw.items()}
            for outcome in ("delivered", "failedAttempts", "deadLettered"):
                deliveries.add_metric([name, outcome], stats.get(outcome, 0.0))
            dead.add_metric([name], r.llen(DEAD_LETTERS.format(consumer=consumer_key(name))))
        yield deliveries
        yield dead
        waiting = backlog(r, self.lanes)
        for name, help_text, value in (
            ("receiver_inbox_items", "Items waiting in the inbox lanes", waiting["inbox"]),
            ("receiver_inbox_oldest_seconds", "Age of the oldest waiting item",
             waiting["oldestInboxSeconds"] or 0),
            ("receiver_workers", "Live RQ workers", waiting["workers"]),
            ("receiver_quarantine_items", "Rejected inputs kept", waiting["quarantined"]),
            ("receiver_mo_parts_pending", "Long MO being reassembled", waiting["moPartsPending"]),
            ("receiver_redis_replicas", "Replicas connected to the Redis primary", waiting["redisReplicas"]),
        ):
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], value)
            yield gauge
        queued = GaugeMetricFamily("receiver_queued_jobs", "RQ jobs queued", labels=["queue"])
        for queue, count in waiting["queuedJobs"].items():
            queued.add_metric([queue], count)
        yield queued
        yield from infobip_status.metrics(r)
        if self.smpp_sessions:
            bound = GaugeMetricFamily("receiver_smpp_bound", "1 when the SMPP session is bound",
                                      labels=["session"])
            for entry in smpp_status.binds(r, self.smpp_sessions):
                bound.add_metric([str(entry["session"])], 1.0 if entry["state"] == "bound" else 0.0)
            yield bound


def _registry() -> CollectorRegistry:
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


@bp.get("/metrics")
def metrics() -> Response:
    """Needs an API key unless METRICS_PUBLIC=1 (e.g. scraped only from a private network)."""
    if not current_app.config.get("METRICS_PUBLIC"):
        auth.check_api(request, current_app.config)
    registry = CollectorRegistry()
    sessions = current_app.config["SMPP_SESSIONS"] if current_app.config.get("SMPP_HOST") else 0
    registry.register(RedisCollector(current_app.config["DRAIN_LANES"], current_app.extensions["routes"],
                                     sessions))
    own = _registry()
    body = generate_latest(own) + generate_latest(registry)
    return Response(body, mimetype="text/plain; version=0.0.4; charset=utf-8")
