"""Reconciliation (SPEC §9.3): where a report nobody pushed or pulled enters, from `/sms/1/logs`.

A report can be lost for good: the receiver was down longer than Infobip's retry cycle
(~41.5 h), a pulled page died between Infobip's answer and Redis (app/infobip/pull.py), a
proxy ate a push. Infobip's logs are repeatable for 48 h, so a run:

1. takes the messages not final whose last news is older than RECONCILE_AFTER from the index
   `ix:pending` (kept by the drain in the transaction that writes each message: no scan of
   every message), oldest news first, at most MAX_CANDIDATES;
2. marks those sent more than 48 h ago `stale` (an item of kind "stale" through their lane,
   so the drain stays the one writer of the message and its bulk's `stale` count);
3. asks `/sms/1/logs` about the rest, at most RECONCILE_RATE calls a second: by bulkId for a
   bulk with BULK_QUERY_MIN or more candidates, then by messageId, BATCH ids a call, for the
   others and for what the bulk query did not return;
4. feeds every log entry newer than what is known through `app.handoff.accept(...,
   source="logs")`: the same event ids as a push, so a report that also came by push or pull
   is one event;
5. notes the others as looked at now (their `ix:pending` score), so the next look is
   RECONCILE_AFTER later, and records the run (and adds it to the totals since the start)
   for `GET /api/reconciliation`.

A log entry is a report with a few differences (seed "ПРОСМОТР ЛОГОВ"): `mccmnc` in lower case
(app.dlr reads it as `mccMnc`), `from` and `text` present, no `callbackData` (filled from what
is known, so a consumer that correlates by it still can), and a message Infobip has no outcome
for yet has no `doneAt`: such an entry is no report and is not fed.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from marshmallow import ValidationError
from redis import Redis

from app import dlr, enqueue, events, handoff, keys, store
from app.clock import epoch, now_text
from app.infobip.client import InfobipClient, InfobipError
from app.infobip.lease import Lease
from app.keys import INDEX_PENDING, MESSAGE, RECONCILE_LAST, RECONCILE_LOCK, RECONCILE_TOTALS, lane_of
from app.store import unpack

log = logging.getLogger(__name__)

LOG_WINDOW = 48 * 3600  # seconds Infobip keeps logs
MAX_CANDIDATES = 5000  # per run; the rest waits for the next run
BATCH = 50  # messageIds per /sms/1/logs call
BULK_QUERY_MIN = 20  # candidates of one bulk from which one query by bulkId is cheaper
PAGE = 1000  # Infobip's maximum `limit`
TIME_BUDGET = 20.0  # seconds of calls per run: the job shares the drain's worker
# One run at a time. Renewed before every call (app/infobip/lease.py): a worker killed mid-run
# once held a 300 s lock and stopped reconciliation for five minutes.
LOCK_TTL = 30


class Limiter:
    """At most `rate` calls a second, by spacing them (one process makes them all)."""

    def __init__(self, rate: float) -> None:
        self.gap, self.next_at = 1.0 / rate, 0.0

    def wait(self) -> None:
        now = time.monotonic()
        if now < self.next_at:
            time.sleep(self.next_at - now)
        self.next_at = max(now, self.next_at) + self.gap


def run(r: Redis, config: Mapping[str, Any], client: InfobipClient,
        now: float | None = None) -> dict[str, Any]:
    """One reconciliation run, unless another holds the lease; returns (and stores) its figures."""
    lease = Lease(r, RECONCILE_LOCK, LOCK_TTL)
    if not lease.take():
        return {"skipped": "another run holds the lock"}
    try:
        return _run(r, config, client, lease, time.time() if now is None else now)
    finally:
        lease.release()


def _run(r: Redis, config: Mapping[str, Any], client: InfobipClient, lease: Lease,
         now: float) -> dict[str, Any]:
    started = time.monotonic()
    # One pending index per lane on a Redis Cluster (app/keys.py `{t}`), one on a single Redis.
    due = sorted((score, t, m.decode()) for t in keys.tags() for m, score in r.zrangebyscore(
        INDEX_PENDING.format(t=t), "-inf", now - config["RECONCILE_AFTER"], start=0, num=MAX_CANDIDATES,
        withscores=True))[:MAX_CANDIDATES]
    tag_of = {i: t for _, t, i in due}
    ids = list(tag_of)
    blobs = store.mget(r, [MESSAGE.format(t=tag_of[i], message_id=i) for i in ids])
    records = dict(zip(ids, blobs, strict=True))
    known = {i: unpack(blob) for i, blob in records.items() if blob}
    for i in ids:
        if i not in known:  # expired with the retention period: nothing left to reconcile
            r.zrem(INDEX_PENDING.format(t=tag_of[i]), i)
    stale = [i for i, record in known.items() if now - sent_epoch(record) > LOG_WINDOW]
    mark_stale(r, config, stale)
    stale_ids = set(stale)
    wanted = {i: record for i, record in known.items() if i not in stale_ids}
    figures: dict[str, Any] = {"at": now_text(), "candidates": len(ids), "checked": 0,
                               "filledFromLogs": 0, "stale": len(stale), "calls": 0}
    found: dict[str, dict[str, Any]] = {}
    checked: list[str] = []
    limiter = Limiter(float(config["RECONCILE_RATE"]))
    try:
        for query, about in queries(wanted, found):
            if time.monotonic() - started > TIME_BUDGET:
                break  # the rest is next run's: their scores are unchanged, so they come first
            limiter.wait()
            if not lease.renew():  # after the wait: the lease need only outlast the call
                break  # it lapsed during a very slow call: another run may be going on
            figures["calls"] += 1
            for entry in client.logs(**query).get("results") or []:
                if isinstance(entry, dict) and entry.get("messageId") in wanted:
                    found.setdefault(entry["messageId"], entry)
            checked += [i for i in about if i in found or "messageId" in query]
    except InfobipError as err:  # the client recorded the feature's health and its backoff
        figures["error"] = type(err).__name__
    figures["checked"] = len(checked)
    news = [report for i, entry in found.items() if (report := as_report(entry, wanted[i]))]
    if news:
        body = orjson.dumps({"results": news})
        answer = handoff.accept(r, config, "dlr", news, source="logs", body=body, path="/infobip/dlr")
        figures["filledFromLogs"] = answer["accepted"]
    if checked or stale:  # next look RECONCILE_AFTER from now (GT: never back in time; XX: never
        # re-add what the drain removed); a stale mark not yet applied is not marked twice
        looked: dict[str, dict[str, float]] = defaultdict(dict)
        for i in checked + stale:
            looked[tag_of[i]][i] = now
        for t, members in looked.items():
            r.zadd(INDEX_PENDING.format(t=t), members, xx=True, gt=True)
    pipe = r.pipeline(transaction=True)
    last, totals = (name.format(t=keys.reconcile_tag()) for name in (RECONCILE_LAST, RECONCILE_TOTALS))
    pipe.set(last, orjson.dumps(figures))
    for name in ("candidates", "checked", "filledFromLogs", "stale", "calls"):
        pipe.hincrby(totals, name, figures[name])
    pipe.hincrby(totals, "runs", 1)
    pipe.execute()
    log.info("reconcile", extra=figures)
    return figures


def sent_epoch(record: dict[str, Any]) -> float:
    """When the message was sent, as best known: a report's sentAt, else its send record's arrival."""
    for report in record["hist"]:
        if report.get("sentAt"):
            return epoch(report["sentAt"])
    first = record.get("send") or (record["hist"][0] if record["hist"] else {})
    return epoch(first["receivedAt"]) if first.get("receivedAt") else time.time()


def mark_stale(r: Redis, config: Mapping[str, Any], message_ids: list[str]) -> None:
    """A stale mark per message, through its lane: the drain applies it (workers/state.py)."""
    if not message_ids:
        return
    lanes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    at = now_text()
    for message_id in message_ids:
        lanes[lane_of(message_id, config["DRAIN_LANES"])].append(
            {"kind": "stale", "receivedAt": at, "data": {"messageId": message_id}})
    enqueue.push(r, [enqueue.Write({lane: enqueue.encode(items) for lane, items in lanes.items()})])


def queries(wanted: Mapping[str, dict[str, Any]],
            found: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], list[str]]]:
    """(query, the candidates it is about): one by bulkId for a bulk with many candidates (its
    newest PAGE entries), then messageIds in batches for the rest and for what a bulk query
    did not return (logs have no cursor, and a bulk's messages share their sentAt, so paging
    back by `sentUntil` would skip them)."""
    by_bulk: dict[str | None, list[str]] = defaultdict(list)
    for message_id, record in wanted.items():
        by_bulk[bulk_of(record)].append(message_id)
    singles: list[str] = []
    for bulk_id, ids in by_bulk.items():
        if bulk_id and len(ids) >= BULK_QUERY_MIN:
            yield {"bulkId": bulk_id, "limit": PAGE}, ids
            singles += [i for i in ids if i not in found]
        else:
            singles += ids
    for start in range(0, len(singles), BATCH):
        batch = singles[start : start + BATCH]
        yield {"messageId": batch, "limit": BATCH}, batch


def bulk_of(record: dict[str, Any]) -> str | None:
    return next((h["bulkId"] for h in record["hist"] if h.get("bulkId")), None) or (
        record.get("send") or {}).get("bulkId")


def as_report(entry: dict[str, Any], record: dict[str, Any]) -> dict[str, Any] | None:
    """The log entry as a report, when it tells more than `record` knows; else None."""
    if not entry.get("doneAt"):
        return None  # Infobip has no outcome for it yet: not a report
    report = dict(entry)
    if "mccmnc" in report and "mccMnc" not in report:
        report["mccMnc"] = report.pop("mccmnc")
    if report.get("callbackData") is None:
        known = next((h["callbackData"] for h in reversed(record["hist"]) if h.get("callbackData")), None)
        if known is not None:
            report["callbackData"] = known
    try:
        data = dlr.load(report)
    except ValidationError:
        return report  # not ours to judge: the hand-off quarantines it with the reason
    if any(h["eventId"] == events.dlr_event_id(data) for h in record["hist"]):
        return None  # already known (pushed or pulled)
    current = record["hist"][record["cur"]] if record["cur"] is not None else None
    if current is None or data["final"]:
        return report
    return report if (data.get("doneAt") or "") > (current.get("doneAt") or "") else None
