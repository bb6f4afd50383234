"""The drain job's opt-out stage (SPEC §11): the list changes and replies an MO asks for.

Runs in the drain transaction that stores the MO (workers/drain.py), after inbound dedupe, so
it sees each inbound message once: a resent MO or a re-run batch changes nothing twice.
- STOP (a `stop_keywords` word) opts the sender out of the receiver it wrote to; STOPALL, or
  an MO without a receiver, of every receiver (`*`). START lifts the receiver's entry and the
  every-receiver one (the sender asked to hear from this number again). A change emits
  `contact.optout`/`contact.optin` with an id derived from the MO's messageId; no change (a
  second STOP) emits nothing. The MO still goes to its route's consumers.
- Manual changes (`/api/optouts`, app/optout/lists.py) arrive as `optout` items in the lanes
  and are applied here the same way.
- The reply (stop/start/help text, else the route's `reply:`) is recorded with its messageId
  and queued in `replies:due`; workers/replies.py sends it after the transaction.
MO and manual changes are laned by the number (app/mo.py `lane_key`), so the list, the reply
record and the due replies of a number carry this lane's tag: on a Redis Cluster the
transaction stays in the lane's slot. The number's `optout:` hash is still WATCHed: on one
Redis, where DRAIN_LANES may change at any time, MO of one sender may drain in two lanes for a
moment, and a concurrent change then makes the batch re-run instead of deciding on a stale list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from redis import Redis
from redis.client import Pipeline
from rq import Queue

from app import enqueue, events, keys
from app.clock import epoch, now_text
from app.connection import Replication, queue_client
from app.enqueue import DRAIN_RETRY, LOCK_TTL, new_job_id
from app.keys import (
    DELIVERY_QUEUE,
    OPTOUT_BY_RECEIVER,
    OPTOUT_INDEX,
    REPLIES_DUE,
    REPLIES_LOCK,
    REPLY,
    lane_of,
)
from app.optout.lists import ALL, list_key
from app.optout.replies import reply_id
from app.optout.section import fill_reply, keyword_of
from app.routes import Routes

# Record a reply only once, however often its MO is applied; queue it unless disabled.
_RECORD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3]) end
return 1
"""


class OptOutState:
    def __init__(self, routes: Routes, cfg: dict[str, Any]) -> None:
        self.optout = routes.optout
        self.route_by_name = {route.name: route for route in routes.mo_routes}
        self.retention = cfg["RETENTION_SECONDS"]
        self.sending = bool(cfg.get("INFOBIP_BASE_URL"))
        self.lists: dict[str, dict[str, dict[str, Any]]] = {}  # msisdn -> receiver -> entry
        self.changes: list[tuple[str, str, dict[str, Any] | None]] = []  # (msisdn, receiver, entry)
        self.replies: list[dict[str, str]] = []
        self._watch: Callable[..., Any] = lambda *keys: None
        self._r: Redis | None = None

    def load(self, r: Redis, pipe: Pipeline, envelopes: list[dict[str, Any]]) -> None:
        """Read (and WATCH) the list entries of the numbers the batch may change, in one round
        trip: senders of STOP/START and manual changes. Other MO need no read here (a route
        reply is checked against the list when it is sent), so ordinary traffic pays nothing."""
        self._r, self._watch = r, pipe.watch
        numbers = sorted({self._changes_list(e) for e in envelopes} - {None, ""})
        if not numbers:
            return
        names = [list_key(n) for n in numbers]
        pipe.watch(*names)
        read = r.pipeline(transaction=False)
        for name in names:
            read.hgetall(name)
        for number, raw in zip(numbers, read.execute(), strict=True):
            self.lists[number] = {k.decode(): orjson.loads(v) for k, v in raw.items()}

    def _changes_list(self, envelope: dict[str, Any]) -> str | None:
        """The number whose list this item may change, if any."""
        data = envelope["data"]
        if envelope["kind"] == "optout":
            return data["msisdn"]
        if envelope["kind"] == "mo" and self.optout.kind(data.get("keyword")) in ("stop", "start"):
            return data.get("from")
        return None

    def _list(self, msisdn: str) -> dict[str, dict[str, Any]]:
        """A sender's entries; read now (and watched) if the batch did not name it (a flushed
        long MO only names its parts' key)."""
        if msisdn not in self.lists and self._r is not None:
            key = list_key(msisdn)
            self._watch(key)
            self.lists[msisdn] = {k.decode(): orjson.loads(v) for k, v in self._r.hgetall(key).items()}
        return self.lists.setdefault(msisdn, {})

    def on_mo(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """The events of a new MO's opt-out keyword; records its reply, if it gets one."""
        sender, receiver = data.get("from"), data.get("to")
        kind = self.optout.kind(data.get("keyword"))
        found: list[dict[str, Any]] = []
        if sender and kind in ("stop", "start"):
            word = keyword_of(data.get("keyword"))
            entry = {"keyword": word, "messageId": data["messageId"], "source": "mo"}
            if kind == "stop":
                scope = ALL if word == "STOPALL" or not receiver else receiver
                found = self._opt_out(sender, scope, entry, data["messageId"])
            else:
                found = self._opt_in(sender, [receiver or ALL, ALL], entry, data["messageId"])
        self._reply(data, kind)
        return found

    def change(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """A manual change queued by the API."""
        entry = {"keyword": None, "messageId": None, "source": "api", "note": data.get("note")}
        msisdn, receiver = data["msisdn"], data["receiver"]
        if data["action"] == "optout":
            return self._opt_out(msisdn, receiver, entry, data["changeId"])
        scopes = list(self._list(msisdn)) if receiver == ALL else [receiver]
        return self._opt_in(msisdn, scopes, entry, data["changeId"])

    def _opt_out(self, msisdn: str, scope: str, entry: dict[str, Any], cause: str) -> list[dict[str, Any]]:
        entries = self._list(msisdn)
        if scope in entries:
            return []  # already opted out: no change, no event
        entries[scope] = {"since": now_text(), **entry}
        self.changes.append((msisdn, scope, entries[scope]))
        return [self._event(events.CONTACT_OPTOUT, msisdn, scope, entries[scope], cause)]

    def _opt_in(self, msisdn: str, scopes: list[str], entry: dict[str, Any],
                cause: str) -> list[dict[str, Any]]:
        entries = self._list(msisdn)
        found = []
        for scope in dict.fromkeys(scopes):
            if entries.pop(scope, None) is not None:
                self.changes.append((msisdn, scope, None))
                lifted = {"at": now_text(), **entry}
                found.append(self._event(events.CONTACT_OPTIN, msisdn, scope, lifted, cause))
        return found

    def _event(self, kind: str, msisdn: str, scope: str, entry: dict[str, Any], cause: str) -> dict[str, Any]:
        data = {"msisdn": msisdn, "receiver": scope, **entry}
        return events.build(events.contact_event_id(kind, msisdn, scope, cause), kind, data)

    def _reply(self, data: dict[str, Any], kind: str | None) -> None:
        if kind:
            template = getattr(self.optout, f"{kind}_reply")
        else:
            route = self.route_by_name.get(data.get("route") or "")
            template, kind = (route.reply if route else None), "route"
        text = fill_reply(template, data).strip() if template else ""
        if not text or not data.get("from") or not data.get("to"):
            return  # an empty reply text sends nothing; without both numbers there is no one to answer
        self.replies.append({
            "inbound": data["messageId"], "messageId": reply_id(data["messageId"]), "kind": kind,
            "from": data["to"], "to": data["from"], "text": text, "createdAt": now_text(), "attempts": "0",
            "status": "queued" if self.sending else "disabled",
        })

    def write(self, pipe: Pipeline) -> None:
        for msisdn, scope, entry in self.changes:
            t = keys.tag_of(msisdn)
            key, member = list_key(msisdn), f"{msisdn}|{scope}"
            index, by_receiver = OPTOUT_INDEX.format(t=t), OPTOUT_BY_RECEIVER.format(t=t, receiver=scope)
            if entry is None:
                pipe.hdel(key, scope)
                pipe.zrem(index, member)
                pipe.zrem(by_receiver, msisdn)
            else:
                pipe.hset(key, scope, orjson.dumps(entry))
                pipe.zadd(index, {member: epoch(entry["since"])})
                pipe.zadd(by_receiver, {msisdn: epoch(entry["since"])})
        for reply in self.replies:
            t = keys.tag_of(reply["to"])  # the inbound message's sender
            due = str(epoch(reply["createdAt"])) if reply["status"] == "queued" else ""
            fields = [x for pair in reply.items() for x in pair]
            record = REPLY.format(t=t, message_id=reply["inbound"])
            # execute_command: redis-py's cluster pipeline has no eval().
            pipe.execute_command("EVAL", _RECORD, 2, record, REPLIES_DUE.format(t=t),
                                 self.retention, due, reply["inbound"], *fields)

    @property
    def queued(self) -> bool:
        return any(reply["status"] == "queued" for reply in self.replies)


_BY_NUMBER = (b'{"kind":"mo"', b'{"kind":"optout"')  # how every such envelope begins (orjson, kind first)


def forward_strays(r: Redis, lane: int, cfg: Mapping[str, Any], items: list[bytes]) -> list[bytes]:
    """On a cluster: move the MO and opt-out items of a number another lane owns to that lane,
    and return the rest. Such items were queued before MO were laned by sender, or by a process
    with another DRAIN_LANES; applied here, their opt-out and reply keys (in the number's lane)
    would be refused as CROSSSLOT, and the batch with them, again and again. At least once: a
    job killed before its batch applies forwards them again, and the owning lane drops the resend
    (dedupe by messageId; a change already made is no change). The forward waits for replicas as
    ingest does (REDIS_MIN_REPLICAS): the batch that held the items is gone once this one applies."""
    lanes = cfg["DRAIN_LANES"]
    mine: list[bytes] = []
    strays: dict[int, list[bytes]] = {}
    for item in items:
        number = None
        if item.startswith(_BY_NUMBER):  # cheap, and a DLR is never decoded twice
            envelope = orjson.loads(item)
            data = envelope["data"]
            number = {"mo": data.get("from"), "optout": data.get("msisdn")}.get(envelope["kind"])
        owner = lane_of(number, lanes) if number else lane
        if owner == lane:
            mine.append(item)
        else:
            strays.setdefault(owner, []).append(item)
    if strays:
        enqueue.push(r, [enqueue.Write(strays)], replication=Replication.from_config(cfg))
    return mine


def kick_replies(r: Redis, t: str) -> bool:
    """Start the sender of the replies of the lane tagged `t` unless one runs (its lock is the
    job id, as the lanes'). One Redis has one sender for every lane (`t` is empty)."""
    job_id = new_job_id()
    if r.set(REPLIES_LOCK.format(t=t), job_id, nx=True, ex=LOCK_TTL):
        Queue(DELIVERY_QUEUE, connection=queue_client(r)).enqueue(
            "workers.replies.run", t, job_id=job_id, retry=DRAIN_RETRY, job_timeout=600, result_ttl=0,
            description=f"replies{t}")
        return True
    return False


def kick_replies_if_due(r: Redis, now: float) -> int:
    """For the sweep: a lane with a reply due and no sender (a killed job's lock lapsed) gets one."""
    kicked = 0
    for t in keys.tags():
        due = r.zrangebyscore(REPLIES_DUE.format(t=t), "-inf", now, start=0, num=1)
        kicked += int(bool(due) and kick_replies(r, t))
    return kicked
