"""Every Redis key the service uses, in one place, so the layout can be read at a glance.

Ingest (web) writes `inbox:*` and `quarantine`; workers own everything else. The query API
only reads. `docs/` and README describe the same layout in prose.

`{t}` in a name is the shard tag (SPEC §12, bottom of this file): empty on one Redis, the lane's
hash tag (`:{3}`) on a Redis Cluster for every key a drain transaction touches, so that each
transaction and script stays in one slot. Consumer keys carry the consumer's own tag the same way
(`consumer_key`).
"""

from __future__ import annotations

import zlib

QUEUE_NAME = "receiver"  # the RQ queue the drain jobs run on
DELIVERY_QUEUE = "deliveries"  # the RQ queue of consumer deliveries: a slow consumer waits there

# Ingest -> worker hand-off. Items are spread over lanes by a stable key, so all reports of one
# message meet in one lane and only one drain job at a time writes that message's state.
INBOX = "inbox:{lane}"  # list of JSON items, RPUSHed by ingest
LANE_LOCK = "drain:{lane}"  # value: id of the drain job that owns the lane
BATCH_PREFIX = "batch:{lane}"  # + ":<job id>": items a drain job has claimed, not yet applied
CLAIMED = "claimed{t}"  # set of every batch key (lanes and outboxes) that exists: the sweep's list
CLAIMED_SCANNED = "claimed:scanned"  # marker: batches claimed before that set existed are listed

QUARANTINE = "quarantine"  # list of rejected inputs, newest first, capped

MESSAGE = "msg{t}:{message_id}"  # zlib JSON {"hist": [reports], "cur": index of the current one}
BULK = "bulk{t}:{bulk_id}"  # hash: per-lane counters "<lane>:<field>"
INDEX_ALL = "ix:msg{t}"  # zset messageId -> first received (epoch seconds)
INDEX_TO = "ix:msg:to{t}"  # lexicographic zset "<to>|<messageId>" (score 0)
INDEX_BULK = "ix:msg:bulk{t}:{bulk_id}"
INDEX_BULKS = "ix:bulks{t}"  # zset bulkId -> last change (epoch seconds)

INBOUND = "in{t}:{message_id}"  # JSON of an inbound message's data (SPEC §3 MO form)
INDEX_IN = "ix:in{t}"  # zset messageId -> received (epoch seconds)
INDEX_IN_FROM = "ix:in:from{t}:{sender}"
INDEX_IN_TO = "ix:in:to{t}:{to}"
INDEX_IN_KEYWORD = "ix:in:kw{t}:{keyword}"
PARTS = "parts{t}:{key}"  # hash seq -> JSON part of a concatenated MO being reassembled
PARTS_PENDING = "parts:pending{t}"  # zset "<lane>|<key>" -> first part's arrival (epoch seconds)
PART_SEEN = "part{t}:{source_id}"  # marker: this part was received (drops resent parts)

# Fan-out, per consumer (the same hand-off as the lanes, see app/enqueue.py).
OUTBOX = "out:{consumer}"  # list of deliveries due now
OUTBOX_LOCK = "deliver:{consumer}"
OUTBOX_BATCH_PREFIX = "dbatch:{consumer}"  # + ":<job id>"
RETRIES = "retry:{consumer}"  # zset delivery -> due time (epoch seconds)
DEAD_LETTERS = "dead:{consumer}"  # list of deliveries that ran out of attempts, newest first
CONSUMER_STATS = "stats:{consumer}"  # hash: delivered, failedAttempts, deadLettered, ...
WORKER_COUNTERS = "stats:workers{t}"  # hash "<kind>:<outcome>" and lag histogram, for /metrics
MO_UNROUTED = "stats:mo:unrouted{t}"  # count of MO that no route took (kept all the same)

EVENT_STREAM = "sms-events"  # Redis Stream of normalized events (SPEC §3)


def lane_of(key: str, lanes: int) -> int:
    """Stable lane for a grouping key (messageId for DLRs). crc32 is stable across processes."""
    return zlib.crc32(key.encode()) % lanes


# --- Infobip client (SPEC §9, app/infobip/) --------------------------------------------------
INFOBIP_FEATURES = "infobip:features"  # hash feature -> JSON {state, reason, since, retryAt, failures}
INFOBIP_CALLS = "infobip:calls"  # hash "<feature>:<outcome>" -> calls to Infobip, for /metrics
# SMPP receiver (SPEC §13): number-check results, and each bind's state for the web tier.
NUMBER_CHECK = "num{t}:{message_id}"  # JSON of a number.checked event's data (and its dedupe mark)
SMPP_BIND = "smpp:bind:{session}"  # JSON of one session's state, written by the smpp process, with a TTL
# --- Dashboard aggregates (SPEC §10): written by workers/aggregates.py in the drain (and delivery)
# transactions, read by app/store_dashboard.py. Pages read these, never a scan of the messages.
DASH_HOUR = "dash:h{t}:{hour}"  # hash per UTC hour (epoch // 3600): dlr:<minute>, mo:<minute> (minute of the
#                              hour, for the per-minute chart) and the hour's dlr, mo, msgs, g:<group>,
#                              e:<id>, dt:<bucket> (sentAt -> doneAt), lag:<bucket>; kept DASH_HOUR_TTL
DASH_HOUR_TTL = 2 * 86400  # the overview shows 24 h; one day more for a late look
DASH_BULK = "dash:bulk{t}:{bulk_id}"  # hash: e:<errorId> (by current report), dt:<bucket>; RETENTION_DAYS
DASH_BULKS = "dash:bulks{t}"  # zset bulkId -> first report's arrival (newest first on /bulks)
DASH_ANSWER = "dash:answer:{consumer}"  # hash: consumer answer time histogram, a:<bucket>
DASH_SESSION = "dash:session:{sid}"  # a signed-in dashboard session (its TTL is the session's)
DASH_LOGIN_FAILURES = "dash:login:fail:{address}"  # failed sign-ins from one address, short TTL

# --- Redis Cluster (SPEC §12): hash tags -------------------------------------------------------
# On one Redis every tag is empty and the names above are the single-Redis names. On a cluster
# (REDIS_CLUSTER_NODES; app/connection.py calls `shard`) a lane's keys end in `:{<lane>}` before
# their id, a consumer's in `{c:<name>}`, so Redis hashes only the tag: one lane, one slot.
_SHARDED = {"lanes": 0}  # 0: one Redis; else DRAIN_LANES of the cluster


def shard(lanes: int) -> None:
    """Use lane hash tags for `lanes` lanes (0: one Redis, no tags). Set once per process."""
    _SHARDED["lanes"] = lanes


def sharded() -> bool:
    return bool(_SHARDED["lanes"])


def tag(lane: int | str) -> str:
    """The `{t}` of lane `lane`'s keys."""
    return f":{{{lane}}}" if _SHARDED["lanes"] else ""


def tag_of(key: str) -> str:
    """The `{t}` of the lane that `key` (a messageId, for reports) maps to."""
    return tag(lane_of(key, _SHARDED["lanes"])) if _SHARDED["lanes"] else ""


def tags() -> list[str]:
    """Every lane's `{t}`, for readers that merge across lanes (one on a single Redis)."""
    return [tag(lane) for lane in range(_SHARDED["lanes"])] or [""]


def lane_name(lane: int) -> str:
    """The lane's part of `inbox:`/`drain:`/`batch:` names: `3`, or `{3}` on a cluster."""
    return f"{{{lane}}}" if _SHARDED["lanes"] else str(lane)


def consumer_key(name: str) -> str:
    """The consumer's part of its key names: `crm`, or `{c:crm}` on a cluster."""
    return f"{{c:{name}}}" if _SHARDED["lanes"] else name


def consumer_tag(name: str) -> str:
    """The `{t}` of a consumer's keys that are not named after it (its claimed set)."""
    return f":{{c:{name}}}" if _SHARDED["lanes"] else ""


def partial(template: str, **names: str) -> str:
    """`template` with `names` filled in and `{t}` left for `.format(t=...)` per lane."""
    def escaped(value: str) -> str:
        return str(value).replace("{", "{{").replace("}", "}}")
    return template.format(t="{t}", **{name: escaped(value) for name, value in names.items()})


def untag(part: str) -> str:
    """`{3}` -> `3`, `{c:crm}` -> `crm`, plain names unchanged (parsing batch keys)."""
    part = part.strip("{}")
    return part[2:] if part.startswith("c:") else part


FANOUT = "fan{t}"  # cluster only: a lane's events for the consumers, moved on by the drain job
# Cluster only, with REDIS_MIN_REPLICAS: `wait:{<tag>}` (or `{<key>}:wait`), a marker written in a
# written key's slot so that WAIT on its connection confirms the write (connection.py `in_slots`).

# --- SPEC §9: pull mode, send records, reconciliation (h14b) ----------------------------------
INDEX_PENDING = "ix:pending{t}"  # zset messageId -> last news (epoch s) of every message not final
PULL_LOCK = "lock:pull:{feature}"  # one poller at a time across workers (value: its token)
RECONCILE_LOCK = "lock:reconcile"  # one reconciliation run at a time
# A run's record and totals are written in one transaction: on a cluster they share the tag
# `reconcile_tag()` (`:{reconcile}`), as a lane's keys share the lane's.
RECONCILE_LAST = "reconcile{t}:last"  # JSON of the last reconciliation run (GET /api/reconciliation)
RECONCILE_TOTALS = "reconcile{t}:totals"  # hash: the figures of every run added up, and "runs"


def reconcile_tag() -> str:
    return tag("reconcile")


# --- SPEC §11: opt-outs and replies (app/optout/, workers/optout.py, workers/replies.py) ---
# Opt-outs never expire: a STOP holds until START or a manual lift. MO and manual changes are
# laned by the sender's number (app/mo.py `lane_key`, app/optout/lists.py), so one lane owns a
# number's list, its replies and its reply cap: `{t}` here is `tag_of(<number>)`, the lane of the
# MO's sender (for a reply: of the inbound message's `from`). The drain transaction that applies
# a STOP and the reply job's `_BEGIN` script then touch one slot. The indexes, the due replies and
# the reply job's lock are per lane; their readers merge the lanes (`keys.tags()`).
OPTOUT = "optout{t}:{msisdn}"  # hash receiver ("*": every receiver) -> JSON {since, keyword, ...}
OPTOUT_INDEX = "ix:optout{t}"  # zset "<msisdn>|<receiver>" -> since (epoch seconds), for the list
OPTOUT_BY_RECEIVER = "ix:optout:rcv{t}:{receiver}"  # zset msisdn -> since; receiver "*" too
REPLY = "reply{t}:{message_id}"  # hash: the reply to inbound message <id>, recorded before it is sent
REPLIES_DUE = "replies:due{t}"  # zset inbound messageId -> when its reply is next tried (epoch)
REPLIES_LOCK = "replies:lock{t}"  # value: id of the one job sending the lane's replies
REPLIES_SENT = "replies:sent{t}:{msisdn}"  # zset reply messageId -> sent (epoch): the hourly cap
