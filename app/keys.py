"""Every Redis key the service uses, in one place, so the layout can be read at a glance.

Ingest (web) writes `inbox:*` and `quarantine`; workers own everything else. The query API
only reads. `docs/` and README describe the same layout in prose.
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
CLAIMED = "claimed"  # set of every batch key (lanes and outboxes) that exists: the sweep's list
CLAIMED_SCANNED = "claimed:scanned"  # marker: batches claimed before that set existed are listed

QUARANTINE = "quarantine"  # list of rejected inputs, newest first, capped

MESSAGE = "msg:{message_id}"  # zlib JSON {"hist": [reports], "cur": index of the current one}
BULK = "bulk:{bulk_id}"  # hash: per-lane counters "<lane>:<field>"
INDEX_ALL = "ix:msg"  # zset messageId -> first received (epoch seconds)
INDEX_TO = "ix:msg:to"  # lexicographic zset "<to>|<messageId>" (score 0)
INDEX_BULK = "ix:msg:bulk:{bulk_id}"
INDEX_BULKS = "ix:bulks"  # zset bulkId -> last change (epoch seconds)

INBOUND = "in:{message_id}"  # JSON of an inbound message's data (SPEC §3 MO form)
INDEX_IN = "ix:in"  # zset messageId -> received (epoch seconds)
INDEX_IN_FROM = "ix:in:from:{sender}"
INDEX_IN_TO = "ix:in:to:{to}"
INDEX_IN_KEYWORD = "ix:in:kw:{keyword}"
PARTS = "parts:{key}"  # hash seq -> JSON part of a concatenated MO being reassembled
PARTS_PENDING = "parts:pending"  # zset "<lane>|<key>" -> first part's arrival (epoch seconds)
PART_SEEN = "part:{source_id}"  # marker: this part was received (drops resent parts)

# Fan-out, per consumer (the same hand-off as the lanes, see app/enqueue.py).
OUTBOX = "out:{consumer}"  # list of deliveries due now
OUTBOX_LOCK = "deliver:{consumer}"
OUTBOX_BATCH_PREFIX = "dbatch:{consumer}"  # + ":<job id>"
RETRIES = "retry:{consumer}"  # zset delivery -> due time (epoch seconds)
DEAD_LETTERS = "dead:{consumer}"  # list of deliveries that ran out of attempts, newest first
CONSUMER_STATS = "stats:{consumer}"  # hash: delivered, failedAttempts, deadLettered, ...
WORKER_COUNTERS = "stats:workers"  # hash "<kind>:<outcome>" and lag histogram, for /metrics
MO_UNROUTED = "stats:mo:unrouted"  # count of MO that no route took (kept all the same)

EVENT_STREAM = "sms-events"  # Redis Stream of normalized events (SPEC §3)


def lane_of(key: str, lanes: int) -> int:
    """Stable lane for a grouping key (messageId for DLRs). crc32 is stable across processes."""
    return zlib.crc32(key.encode()) % lanes


# --- Infobip client (SPEC §9, app/infobip/) --------------------------------------------------
INFOBIP_FEATURES = "infobip:features"  # hash feature -> JSON {state, reason, since, retryAt, failures}
INFOBIP_CALLS = "infobip:calls"  # hash "<feature>:<outcome>" -> calls to Infobip, for /metrics
# SMPP receiver (SPEC §13): number-check results, and each bind's state for the web tier.
NUMBER_CHECK = "num:{message_id}"  # JSON of a number.checked event's data (and its dedupe mark)
SMPP_BIND = "smpp:bind:{session}"  # JSON of one session's state, written by the smpp process, with a TTL
# --- Dashboard aggregates (SPEC §10): written by workers/aggregates.py in the drain (and delivery)
# transactions, read by app/store_dashboard.py. Pages read these, never a scan of the messages.
DASH_HOUR = "dash:h:{hour}"  # hash per UTC hour (epoch // 3600): dlr:<minute>, mo:<minute> (minute of the
#                              hour, for the per-minute chart) and the hour's dlr, mo, msgs, g:<group>,
#                              e:<id>, dt:<bucket> (sentAt -> doneAt), lag:<bucket>; kept DASH_HOUR_TTL
DASH_HOUR_TTL = 2 * 86400  # the overview shows 24 h; one day more for a late look
DASH_BULK = "dash:bulk:{bulk_id}"  # hash: e:<errorId> (by current report), dt:<bucket>; RETENTION_DAYS
DASH_BULKS = "dash:bulks"  # zset bulkId -> first report's arrival (newest first on /bulks)
DASH_ANSWER = "dash:answer:{consumer}"  # hash: consumer answer time histogram, a:<bucket>
DASH_SESSION = "dash:session:{sid}"  # a signed-in dashboard session (its TTL is the session's)
DASH_LOGIN_FAILURES = "dash:login:fail:{address}"  # failed sign-ins from one address, short TTL

# --- SPEC §9: pull mode, send records, reconciliation (h14b) ----------------------------------
INDEX_PENDING = "ix:pending"  # zset messageId -> last news (epoch s) of every message not final
PULL_LOCK = "lock:pull:{feature}"  # one poller at a time across workers (value: its token)
RECONCILE_LOCK = "lock:reconcile"  # one reconciliation run at a time
RECONCILE_LAST = "reconcile:last"  # JSON of the last reconciliation run (GET /api/reconciliation)
RECONCILE_TOTALS = "reconcile:totals"  # hash: the figures of every run added up, and "runs"

# --- SPEC §11: opt-outs and replies (app/optout/, workers/optout.py, workers/replies.py) ---
# Opt-outs never expire: a STOP holds until START or a manual lift.
OPTOUT = "optout:{msisdn}"  # hash receiver ("*": every receiver) -> JSON {since, keyword, ...}
OPTOUT_INDEX = "ix:optout"  # zset "<msisdn>|<receiver>" -> since (epoch seconds), for the list
OPTOUT_BY_RECEIVER = "ix:optout:rcv:{receiver}"  # zset msisdn -> since; receiver "*" too
REPLY = "reply:{message_id}"  # hash: the reply to inbound message <id>, recorded before it is sent
REPLIES_DUE = "replies:due"  # zset inbound messageId -> when its reply is next tried (epoch)
REPLIES_LOCK = "replies:lock"  # value: id of the one job sending replies
REPLIES_SENT = "replies:sent:{msisdn}"  # zset reply messageId -> sent (epoch): the hourly cap
