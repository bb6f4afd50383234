"""The opt-out list: reads (lookup, list, bulk check) and manual change requests.

`optout:<msisdn>` is a hash, receiver -> JSON `{since, keyword, messageId, source, note}`; the
receiver `*` means every receiver (STOPALL, or a manual opt-out of all). A number is opted out
of receiver R when its hash has R or `*`. Two sorted sets list the entries newest first: one
of every (msisdn, receiver), one per receiver. Workers write all three (workers/optout.py);
this module only reads them, and queues manual changes through the hand-off.

A number's hash lives in the lane of the number (`optout{t}:<msisdn>` with `keys.tag_of`, as its
MO are laned); on a Redis Cluster each lane keeps its own two indexes, and `find` merges them.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from typing import Any

import orjson
from redis import Redis

from app import enqueue, keys
from app.clock import now_text
from app.keys import OPTOUT, OPTOUT_BY_RECEIVER, OPTOUT_INDEX, lane_of

ALL = "*"  # the receiver of an opt-out from every receiver
CHUNK = 1000  # numbers per pipelined round trip of `check`
MSISDN_RE = re.compile(r"\+?([0-9]{1,20})")  # as MO senders arrive, with or without "+"


def normalize(msisdn: Any) -> str | None:
    """The number as the list keys it (as MO senders arrive: no "+"); None if it is not one."""
    found = MSISDN_RE.fullmatch(msisdn) if isinstance(msisdn, str) else None
    return found.group(1) if found else None


def lookup(r: Redis, msisdn: str) -> dict[str, Any]:
    """`{"msisdn", "optedOut", "scopes": [{"receiver", "since", "keyword", "messageId", ...}]}`."""
    raw = r.hgetall(list_key(msisdn))
    scopes = sorted((_entry(receiver.decode(), value) for receiver, value in raw.items()),
                    key=lambda s: s["since"], reverse=True)
    return {"msisdn": msisdn, "optedOut": bool(scopes), "scopes": scopes}


def list_key(msisdn: str) -> str:
    """The number's opt-out hash, in its lane (workers/optout.py writes the same key)."""
    return OPTOUT.format(t=keys.tag_of(msisdn), msisdn=msisdn)


def _entry(receiver: str, value: bytes) -> dict[str, Any]:
    return {"receiver": receiver, **orjson.loads(value)}


def opted_out(r: Redis, msisdn: str, receiver: str | None) -> bool:
    return bool(check(r, [msisdn], receiver))


def check(r: Redis, numbers: Iterable[str], receiver: str | None = None) -> list[str]:
    """The numbers (normalized, in the given order, each once) that are opted out of `receiver`
    (of any receiver when None). One pipelined round trip per CHUNK numbers, not one per number."""
    unique = list(dict.fromkeys(numbers))
    found: list[str] = []
    for start in range(0, len(unique), CHUNK):
        chunk = unique[start : start + CHUNK]
        pipe = r.pipeline(transaction=False)
        for number in chunk:
            key = list_key(number)
            if receiver is None:
                pipe.exists(key)
            else:
                pipe.hmget(key, receiver, ALL)
        for number, hit in zip(chunk, pipe.execute(), strict=True):
            if (any(hit) if isinstance(hit, list) else hit):
                found.append(number)
    return found


def find(r: Redis, receiver: str | None = None, since: float | None = None,
         limit: int = 50) -> list[dict[str, Any]]:
    """Entries newest first, each `{"msisdn", "receiver", "since", ...}`. With a receiver: its
    own entries and the every-receiver ones, which hold for it too."""
    low = since if since is not None else "-inf"
    scopes = [None] if receiver is None else list(dict.fromkeys((receiver, ALL)))
    indexes = [OPTOUT_INDEX if scope is None else keys.partial(OPTOUT_BY_RECEIVER, receiver=scope)
               for scope in scopes]
    read = r.pipeline(transaction=False)
    for t in keys.tags():  # one index on one Redis; one per lane on a cluster, merged here
        for index in indexes:
            read.zrevrangebyscore(index.format(t=t), "+inf", low, start=0, num=limit, withscores=True)
    found: list[tuple[float, str, str]] = []
    for n, rows in enumerate(read.execute()):
        scope = scopes[n % len(scopes)]
        for member, score in rows:
            msisdn, _, of = member.decode().partition("|")  # OPTOUT_INDEX: "<msisdn>|<receiver>"
            found.append((score, msisdn, scope or of))
    found.sort(key=lambda row: row[0], reverse=True)
    pairs = [(msisdn, scope) for _, msisdn, scope in found[:limit]]
    pipe = r.pipeline(transaction=False)
    for msisdn, scope in pairs:
        pipe.hget(list_key(msisdn), scope)
    return [{"msisdn": msisdn, **_entry(scope, value)}
            for (msisdn, scope), value in zip(pairs, pipe.execute(), strict=True) if value]


def request_change(r: Redis, config: dict[str, Any], msisdn: str, action: str, receiver: str,
                   note: str | None = None) -> dict[str, Any]:
    """Queue a manual opt-out (`action` "optout") or lift ("optin") of `receiver` (ALL: every
    receiver; lifting ALL lifts every entry of the number). The drain job of the number's lane
    applies it and emits its event in one transaction, as it does for a STOP by SMS; returns
    once the request is in Redis."""
    data = {"msisdn": msisdn, "action": action, "receiver": receiver, "note": note,
            "changeId": secrets.token_hex(16), "source": "api"}
    envelope = {"kind": "optout", "receivedAt": now_text(), "data": data}
    lane = lane_of(msisdn, config["DRAIN_LANES"])
    enqueue.push(r, [enqueue.Write({lane: enqueue.encode([envelope])})], config["QUARANTINE_MAX"])
    return {k: data[k] for k in ("msisdn", "action", "receiver")} | {"queued": True}

