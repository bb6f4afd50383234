"""Reads of the dashboard's aggregates (SPEC §10), which workers/aggregates.py keeps.

Every figure here costs a fixed number of Redis reads, whatever the number of stored messages:
the overview reads 24 hour hashes in one pipeline, a bulk two hashes. Histogram bounds
are defined here, where both the writer (workers/) and the readers (app/) can import them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from redis import Redis

from app import keys, store
from app.classify import classify_error
from app.codes import ERROR_GROUPS, description_for
from app.infobip import status as infobip_status
from app.keys import DASH_ANSWER, DASH_BULK, DASH_BULKS, DASH_HOUR, INDEX_BULKS, consumer_key
from app.smpp import status as smpp_status

# Upper bounds in seconds; a value above the last falls in "inf".
DELIVERY_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
ANSWER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
GROUPS = ("ACCEPTED", "PENDING", "DELIVERED", "UNDELIVERABLE", "EXPIRED", "REJECTED")
MINUTES = 24 * 60


def bucket_of(bounds: Sequence[float], value: float) -> str:
    return next((str(b) for b in bounds if value <= b), "inf")


def histogram(fields: dict[str, int], prefix: str, bounds: Sequence[float]) -> list[tuple[str, int]]:
    """(bound, count) in bound order, "inf" last, from `<prefix><bound>` fields."""
    return [(name, fields.get(f"{prefix}{name}", 0)) for name in [*map(str, bounds), "inf"]]


def percentile(buckets: list[tuple[str, int]], share: float) -> float | None:
    """The bucket bound below which `share` of the counted values lie (None: nothing counted).
    Values beyond the last bound read as that bound: "more than"."""
    total = sum(n for _, n in buckets)
    if not total:
        return None
    seen, finite = 0, [float(b) for b, _ in buckets if b != "inf"]
    for bound, n in buckets:
        seen += n
        if seen >= share * total:
            return float(bound) if bound != "inf" else finite[-1]
    return finite[-1]


def _decoded(raw: dict[bytes, bytes]) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in raw.items()}


def _summed(raws: list[dict[bytes, bytes]]) -> dict[str, int]:
    if len(raws) == 1:
        return _decoded(raws[0])
    total: Counter[str] = Counter()
    for raw in raws:
        total.update(_decoded(raw))
    return dict(total)


def error_info(error_id: int, language: str = "en") -> dict[str, Any]:
    """Name, group and description of a GSM error code, by the lookup ingest fills reports with
    (app/classify.py), in `language` (CODE_DESCRIPTIONS). Infobip gives no English text for most
    codes (the description is then the name): the group's ("Handset error occurred.") says more."""
    known = classify_error({"id": error_id}, [], language)
    if "name" not in known:
        return {"id": error_id, "name": f"error {error_id}", "description": "not in Infobip's table",
                "groupName": None, "permanent": None}
    group = ERROR_GROUPS.get(known.get("groupId"))
    return {**{key: known.get(key) for key in ("id", "name", "description", "groupName", "permanent")},
            "groupDescription": description_for(group, language) if group else None}


def last_day(r: Redis, now: float | None = None, language: str = "en") -> dict[str, Any]:
    """The last 24 h from the hour hashes: per-minute series (the last 1,440 minutes) and, for
    the current hour and the 23 before it, the funnel, errors and percentiles."""
    now = time.time() if now is None else now
    last_hour, last_minute = int(now // 3600), int(now // 60)
    pipe = r.pipeline(transaction=False)
    hours = range(last_hour - 24, last_hour + 1)  # 25: the first minutes of the window are in the 25th
    tags = keys.tags()  # one on a single Redis; every lane's counters on a cluster, added up
    for hour in hours:
        for t in tags:
            pipe.hgetall(DASH_HOUR.format(t=t, hour=hour))
    raws = pipe.execute()
    rows = {hour: _summed(raws[i * len(tags): (i + 1) * len(tags)]) for i, hour in enumerate(hours)}
    minutes = range(last_minute - MINUTES + 1, last_minute + 1)

    def series(name: str) -> list[int]:
        return [rows[m // 60].get(f"{name}:{m % 60}", 0) for m in minutes]

    total: Counter[str] = Counter()
    for hour in hours[1:]:
        total.update({k: v for k, v in rows[hour].items() if not k.startswith(("dlr:", "mo:"))})
    groups = {g: total.get(f"g:{g}", 0) for g in GROUPS}
    groups.update({k[2:]: v for k, v in total.items() if k.startswith("g:") and k[2:] not in groups})
    errors = sorted(((int(k[2:]), v) for k, v in total.items() if k.startswith("e:") and v > 0),
                    key=lambda item: -item[1])
    delivery = histogram(total, "dt:", DELIVERY_BUCKETS)
    lag = histogram(total, "lag:", LAG_BUCKETS)
    return {
        "start": minutes[0] * 60,
        "reports": series("dlr"),
        "inbound": series("mo"),
        "totals": {"reports": total.get("dlr", 0), "inbound": total.get("mo", 0),
                   "messages": total.get("msgs", 0)},
        "groups": groups,
        "errors": [{**error_info(e, language), "count": n} for e, n in errors[:10]],
        "delivery": {"p50": percentile(delivery, 0.5), "p90": percentile(delivery, 0.9),
                     "p99": percentile(delivery, 0.99), "count": sum(n for _, n in delivery)},
        "lag": {"p50": percentile(lag, 0.5), "p99": percentile(lag, 0.99), "count": sum(n for _, n in lag)},
    }


def bulk_detail(r: Redis, bulk_id: str, language: str = "en") -> dict[str, Any] | None:
    """The bulk's totals (app/store.py) with its error breakdown and delivery-time histogram."""
    bulk = store.get_bulk(r, bulk_id)
    if bulk is None:
        return None
    fields = _summed([r.hgetall(DASH_BULK.format(t=t, bulk_id=bulk_id)) for t in keys.tags()])
    errors = sorted(((int(k[2:]), v) for k, v in fields.items() if k.startswith("e:") and v > 0),
                    key=lambda item: -item[1])
    delivery = histogram(fields, "dt:", DELIVERY_BUCKETS)
    return {
        **bulk,
        "errors": [{**error_info(e, language), "count": n} for e, n in errors],
        "deliveryTimes": delivery,
        "deliveryPercentiles": {"p50": percentile(delivery, 0.5), "p90": percentile(delivery, 0.9),
                                "p99": percentile(delivery, 0.99)},
    }


def bulk_ids(r: Redis, offset: int = 0, limit: int = 25) -> tuple[list[str], int]:
    """Newest first (by first report); bulks from before the dashboard by last change."""
    if not keys.sharded():
        index = DASH_BULKS.format(t="") if r.exists(DASH_BULKS.format(t="")) else INDEX_BULKS.format(t="")
        ids = [b.decode() for b in r.zrevrange(index, offset, offset + limit - 1)]
        return ids, r.zcard(index)
    first: dict[str, float] = {}  # a cluster: a bulk's first report is the earliest of its lanes'
    for t in keys.tags():
        for member, score in r.zrange(DASH_BULKS.format(t=t), 0, -1, withscores=True):
            first[member.decode()] = min(score, first.get(member.decode(), score))
    ordered = sorted(first, key=lambda bulk_id: (-first[bulk_id], bulk_id))
    return ordered[offset: offset + limit], len(ordered)


def bulks_page(r: Redis, offset: int = 0, limit: int = 25) -> tuple[list[dict[str, Any]], int]:
    ids, count = bulk_ids(r, offset, limit)
    found = (store.get_bulk(r, bulk_id) for bulk_id in ids)
    return [bulk for bulk in found if bulk], count


def answer_times(r: Redis, consumers: Sequence[str]) -> dict[str, dict[str, float | None]]:
    pipe = r.pipeline(transaction=False)
    for name in consumers:
        pipe.hgetall(DASH_ANSWER.format(consumer=consumer_key(name)))
    out = {}
    for name, raw in zip(consumers, pipe.execute(), strict=True):
        buckets = histogram(_decoded(raw), "a:", ANSWER_BUCKETS)
        out[name] = {"p50": percentile(buckets, 0.5), "p99": percentile(buckets, 0.99)}
    return out


def reconciliation(r: Redis, config: Any) -> dict[str, Any] | None:
    """The last reconciliation run and the totals of every run (SPEC §9.3), as
    `GET /api/reconciliation` reads them (`app.store.get_reconciliation`, built with pull and
    reconciliation, issue 14), when Infobip is configured; else None. Tolerant of a tree
    without that reader, and of a reader that fails: the overview must still render."""
    reader = getattr(store, "get_reconciliation", None)
    if not config.get("INFOBIP_BASE_URL") or not callable(reader):
        return None
    try:
        found = reader(r)
    except Exception:  # a panel of another branch's feature must not take the overview down
        return None
    if not isinstance(found, dict):
        return None
    return {"reconcileAfter": config.get("RECONCILE_AFTER") or 0, **found}


def connections(r: Redis, config: Any) -> dict[str, Any]:
    """What the service's own links to Infobip look like, for those that are configured: each
    SMPP session's bind (app/smpp/status.py) and each Infobip API feature's health
    (app/infobip/status.py), the same readers as `/readyz` and `/metrics`."""
    return {
        "smpp": smpp_status.binds(r, config["SMPP_SESSIONS"]) if config.get("SMPP_HOST") else None,
        "infobip": infobip_status.all(r) if config.get("INFOBIP_BASE_URL") else None,
    }
