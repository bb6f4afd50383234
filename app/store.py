"""Reads of the state the workers keep (SPEC §5), for everything that shows it: the query API,
the CLI and the dashboard. Workers write that state (workers/state.py, workers/inbound.py);
this module only reads it, so the web tier needs nothing from `workers/`.

`msg:<id>` is zlib-compressed JSON `{"hist": [...], "cur": n}` (see workers/state.py for why);
`pack`/`unpack` live here so that writer and readers share one format.

On a Redis Cluster (SPEC §12) each lane keeps its own indexes and its share of a bulk's hash
(app/keys.py `{t}`): lists merge the lanes' indexes newest first (`newest`), a bulk adds its
lanes up, and a single message is looked up in every lane at once (lanes are few).
"""

from __future__ import annotations

import heapq
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from redis import Redis

from app import keys
from app.keys import (
    BULK,
    INBOUND,
    INDEX_ALL,
    INDEX_BULK,
    INDEX_BULKS,
    INDEX_IN,
    INDEX_IN_FROM,
    INDEX_IN_KEYWORD,
    INDEX_IN_TO,
    INDEX_TO,
    MESSAGE,
    NUMBER_CHECK,
    RECONCILE_LAST,
    RECONCILE_TOTALS,
    REPLY,
)

UNKNOWN_GROUP = "UNKNOWN"


def pack(record: dict[str, Any]) -> bytes:
    return zlib.compress(orjson.dumps(record), 1)


def unpack(blob: bytes) -> dict[str, Any]:
    return orjson.loads(zlib.decompress(blob))


# --- delivery reports ------------------------------------------------------------------------


def get_any_lane(r: Redis, template: str, **names: str) -> bytes | None:
    """GET of a key that lives in one lane's slot, without knowing which: every lane's at once."""
    if not keys.sharded():
        return r.get(template.format(t="", **names))
    pipe = r.pipeline()
    for t in keys.tags():
        pipe.get(template.format(t=t, **names))
    return next((value for value in pipe.execute() if value), None)


def mget(r: Redis, names: list[str]) -> list[bytes | None]:
    """MGET, or on a cluster one per slot (redis-py sends them together, per node)."""
    if not names:
        return []
    return r.mget_nonatomic(names) if keys.sharded() else r.mget(names)  # type: ignore[attr-defined]


def newest(r: Redis, index: str, page: int = 100, **names: str) -> Iterator[tuple[str, str]]:
    """(tag, member) of the index zset `index` (a key template), newest first across the lanes'
    copies (one copy on a single Redis), reading each a page at a time as the caller goes on."""

    def lane(t: str) -> Iterator[tuple[float, str, str]]:
        key = index.format(t=t, **names)
        for start in range(0, 1 << 40, page):
            rows = r.zrevrange(key, start, start + page - 1, withscores=True)
            yield from ((-score, t, member.decode()) for member, score in rows)
            if len(rows) < page:
                return

    for _, t, member in heapq.merge(*(lane(t) for t in keys.tags())):
        yield t, member


def get_message(r: Redis, message_id: str) -> dict[str, Any] | None:
    return _message_view(get_any_lane(r, MESSAGE, message_id=message_id))


# What a message known only from its send record (SPEC §9.2) shows for the report fields.
_NO_REPORT = {"from": None, "sentAt": None, "doneAt": None, "mccMnc": None, "price": None,
              "error": None, "callbackData": None, "eventId": None}


def _message_view(blob: bytes | None, with_history: bool = True) -> dict[str, Any] | None:
    """The current report in SPEC §3 `data` form, plus every report received, oldest first.
    Without a report yet, the send record (source "send"). `awaitingReport`: sent, not final,
    no report yet; `stale`: still not final once Infobip's 48 h log window had passed."""
    if not blob:
        return None
    record = unpack(blob)
    send = record.get("send")
    if record["cur"] is not None:
        shown = record["hist"][record["cur"]]
    elif send is not None:
        shown = {**_NO_REPORT, "source": "send", **send}
    else:
        return None
    view = {**shown, "awaitingReport": record["cur"] is None and not shown["final"],
            "stale": bool(record.get("stale")) and not shown["final"]}
    return {**view, "history": record["hist"]} if with_history else view


def get_bulk(r: Redis, bulk_id: str) -> dict[str, Any] | None:
    raw: dict[bytes, bytes] = {}
    for t in keys.tags():  # fields are "<lane>:<name>": the lanes' hashes never overlap
        raw.update(r.hgetall(BULK.format(t=t, bulk_id=bulk_id)))
    if not raw:
        return None
    totals: dict[str, Any] = defaultdict(int)
    cost: dict[str, Decimal] = defaultdict(Decimal)
    first, last = [], []
    for key, value in raw.items():
        name = key.decode().split(":", 1)[1]
        text = value.decode()
        if name == "first":
            first.append(text)
        elif name == "last":
            last.append(text)
        elif name.startswith("c:"):
            cost[name[2:]] += Decimal(text)
        else:
            totals[name] += int(text)
    return {
        "bulkId": bulk_id,
        "total": totals.pop("n", 0),
        "awaitingReport": totals.pop("a", 0),  # sent (send records), no report yet
        "stale": totals.pop("s", 0),  # not final once Infobip's 48 h log window had passed
        "byGroup": {name[2:]: n for name, n in sorted(totals.items()) if n},
        "cost": {currency: format(amount, "f") for currency, amount in sorted(cost.items())},
        "firstSentAt": min(first, default=None),
        "lastDoneAt": max(last, default=None),
    }


def recent_bulks(r: Redis, limit: int = 10) -> list[dict[str, Any]]:
    """The bulks that changed last, with their totals."""
    ids = list(dict.fromkeys(member for _, member in _take(newest(r, INDEX_BULKS), limit * len(keys.tags()))))
    found = (get_bulk(r, bulk_id) for bulk_id in ids[:limit])
    return [bulk for bulk in found if bulk]


def _take(items: Iterator[Any], n: int) -> list[Any]:
    return [item for _, item in zip(range(n), items, strict=False)]


def find_messages(
    r: Redis,
    *,
    bulk_id: str | None = None,
    to: str | None = None,
    general_status: str | None = None,
    sent_since: datetime | None = None,
    sent_until: datetime | None = None,
    limit: int = 50,
    max_scan: int = 20_000,
) -> list[dict[str, Any]]:
    """Newest first (by arrival), filtered like Infobip's /sms/1/logs. Scans at most `max_scan`."""
    if to and not bulk_id:
        return _find_by_recipient(r, to, general_status, sent_since, sent_until, limit, max_scan)
    return scan_newest(
        r,
        keys.partial(INDEX_BULK, bulk_id=bulk_id) if bulk_id else INDEX_ALL,
        MESSAGE,
        lambda blob: _message_view(blob, with_history=False),
        lambda view: _matches(view, bulk_id, to, general_status, sent_since, sent_until),
        limit,
        max_scan,
    )


def scan_newest(
    r: Redis,
    index: str,
    value_key: str,
    decode: Callable[[bytes], dict[str, Any] | None],
    keep: Callable[[dict[str, Any]], bool],
    limit: int,
    max_scan: int,
) -> list[dict[str, Any]]:
    """Walk an index zset (a key template with `{t}`) newest first across the lanes, a page at
    a time; fetch the values (`value_key` with `{t}` and `{message_id}`) with one MGET per page;
    keep what `keep` accepts, up to `limit`. Entries whose value expired are skipped. At most
    `max_scan` index entries are looked at."""
    found: list[dict[str, Any]] = []
    page = max(limit * 2, 100)
    entries = newest(r, index, page)
    for _ in range(0, max_scan, page):
        ids = _take(((t, member) for t, member in entries), page)
        if not ids:
            break
        for blob in mget(r, [value_key.format(t=t, message_id=i) for t, i in ids]):
            value = decode(blob) if blob else None
            if value is not None and keep(value):
                found.append(value)
                if len(found) >= limit:
                    return found
    return found


def _find_by_recipient(
    r: Redis,
    to: str,
    general_status: str | None,
    sent_since: datetime | None,
    sent_until: datetime | None,
    limit: int,
    max_scan: int,
) -> list[dict[str, Any]]:
    """A recipient has few messages: take them all from the lexicographic index, then sort."""
    prefix = f"{to}|".encode()
    # Byte 0xFF never occurs in UTF-8, so "[prefix" .. "[prefix\xff" is exactly that prefix.
    ids = [(t, m[len(prefix) :].decode()) for t in keys.tags() for m in r.zrangebylex(
        INDEX_TO.format(t=t), b"[" + prefix, b"[" + prefix + b"\xff", start=0, num=max_scan)]
    blobs = mget(r, [MESSAGE.format(t=t, message_id=i) for t, i in ids])
    views = [_message_view(blob, with_history=False) for blob in blobs]
    found = [v for v in views if v and _matches(v, None, to, general_status, sent_since, sent_until)]
    found.sort(key=lambda v: v.get("receivedAt") or "", reverse=True)
    return found[:limit]


def _matches(
    view: dict[str, Any],
    bulk_id: str | None,
    to: str | None,
    general_status: str | None,
    sent_since: datetime | None,
    sent_until: datetime | None,
) -> bool:
    if bulk_id and view.get("bulkId") != bulk_id:
        return False
    if to and view.get("to") != to:
        return False
    group = (view.get("status") or {}).get("groupName") or UNKNOWN_GROUP
    if general_status and group.upper() != general_status.upper():
        return False
    if sent_since or sent_until:
        if not view.get("sentAt"):
            return False
        sent = datetime.fromisoformat(view["sentAt"])
        if (sent_since and sent < sent_since) or (sent_until and sent > sent_until):
            return False
    return True


# --- inbound messages ------------------------------------------------------------------------


def get_inbound(r: Redis, message_id: str) -> dict[str, Any] | None:
    raw = get_any_lane(r, INBOUND, message_id=message_id)
    return _with_replies(r, [orjson.loads(raw)])[0] if raw else None


def find_inbound(
    r: Redis,
    *,
    sender: str | None = None,
    to: str | None = None,
    keyword: str | None = None,
    limit: int = 50,
    max_scan: int = 20_000,
) -> list[dict[str, Any]]:
    """Newest first; the most selective index drives the scan, the other filters check each."""
    if sender:
        key = keys.partial(INDEX_IN_FROM, sender=sender)
    elif keyword:
        key = keys.partial(INDEX_IN_KEYWORD, keyword=keyword.upper())
    elif to:
        key = keys.partial(INDEX_IN_TO, to=to)
    else:
        key = INDEX_IN
    return _with_replies(r, scan_newest(
        r,
        key,
        INBOUND,
        orjson.loads,
        lambda data: not (
            (sender and data.get("from") != sender)
            or (to and data.get("to") != to)
            or (keyword and (data.get("keyword") or "").upper() != keyword.upper())
        ),
        limit,
        max_scan,
    ))


REPLY_SHOWN = ("messageId", "kind", "text", "status", "reason", "createdAt", "sentAt", "attempts", "error")


def _with_replies(r: Redis, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add `reply` to each inbound message that has one: two pipelined reads for the lot.

    `status` is the state of the reply message when a delivery report for it has arrived (its
    status group, e.g. DELIVERED); before that, the record's own status (queued, sent, ...)."""
    if not messages:
        return messages
    pipe = r.pipeline(transaction=False)
    for message in messages:
        # In the lane of the message's sender (app/keys.py §11), as the drain recorded it.
        pipe.hgetall(REPLY.format(t=keys.tag_of(message.get("from") or ""), message_id=message["messageId"]))
    records = [{k.decode(): v.decode() for k, v in raw.items()} for raw in pipe.execute()]
    ids = [rec.get("messageId") for rec in records]
    reports = mget(r, [MESSAGE.format(t=keys.tag_of(i), message_id=i) for i in ids if i])
    by_id = dict(zip([i for i in ids if i], reports, strict=True))
    for message, rec in zip(messages, records, strict=True):
        if rec:
            message["reply"] = _reply_view(rec, by_id.get(rec.get("messageId")))
    return messages


def _reply_view(rec: dict[str, str], report_blob: bytes | None) -> dict[str, Any]:
    shown: dict[str, Any] = {k: rec[k] for k in REPLY_SHOWN if rec.get(k)}
    shown["attempts"] = int(rec.get("attempts") or 0)
    if report_blob:
        current = unpack(report_blob)
        report = current["hist"][current["cur"]]
        status = report.get("status") or {}
        shown["status"] = status.get("groupName") or shown.get("status")
        shown["report"] = {"status": status.get("name"), "error": (report.get("error") or {}).get("name"),
                           "doneAt": report.get("doneAt")}
    return shown


# --- number checks (SMPP, SPEC §13) ----------------------------------------------------------


def get_number_check(r: Redis, message_id: str) -> dict[str, Any] | None:
    """The `number.checked` data of a number-check request, by its messageId."""
    raw = get_any_lane(r, NUMBER_CHECK, message_id=message_id)
    return orjson.loads(raw) if raw else None


# --- reconciliation (SPEC §9.3) ----------------------------------------------------------------


def get_reconciliation(r: Redis) -> dict[str, Any]:
    """The last reconciliation run (app/infobip/reconcile.py; None before the first) and the
    figures of every run added up (a quiet last run does not hide what an earlier one found)."""
    t = keys.reconcile_tag()
    raw = r.get(RECONCILE_LAST.format(t=t))
    totals = {k.decode(): int(v) for k, v in r.hgetall(RECONCILE_TOTALS.format(t=t)).items()}
    return {"lastRun": orjson.loads(raw) if raw else None, "totals": totals}
