"""Send recorded replies through Infobip (SPEC §11): each at most once, exactly once when
nothing fails for good.

The drain job records a reply (`reply:<inbound id>`, app/optout/replies.py) and queues it in
`replies:due` in the transaction that stores its MO. This job, one at a time (`replies:lock`,
as the lanes'), on the `deliveries` queue, sends what is due. On a Redis Cluster these keys and
the ones below carry the tag of the lane of the MO's sender (app/keys.py §11), and each lane has
its own due replies, lock and job (its argument `t` is the lane's tag; one Redis has one job):

1. `_BEGIN`, one atomic step: a route reply to a number that opted out is `suppressed`; so is
   any reply past `replies_per_sender_per_hour` for its number (a sliding hour of sent reply
   ids, `replies:sent:<msisdn>`: a re-sent reply is not counted twice); otherwise the record
   becomes `sending`, with the time of the attempt, BEFORE the request goes out.
2. `POST /sms/1/text/advanced` from the MO's receiver to its sender, with the messageId chosen
   at record time and `notifyUrl` = PUBLIC_URL/infobip/dlr with the ingest credentials, so the
   reply's delivery report comes back like any other.
3. The outcome: `sent`; or, on 5xx/429/connection errors (`InfobipUnavailable`) and refused
   credentials, `queued` again after a backoff; or `failed` (Infobip refused the message, or
   it ran out of attempts, within two hours).

A record found `sending` means an attempt's outcome is unknown: a timeout after the request
went out (`InfobipUnknownOutcome`), or this job was killed around the request. It is looked up
in `/sms/1/logs` by its messageId, REPLY_LOOKUP_DELAY seconds after the attempt (the logs may
lag): found, it is `sent`; not found, it never reached Infobip and is sent again, with the same
messageId, which Infobip refuses to take twice should the first attempt surface after all.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from redis import Redis
from rq import get_current_job

from app.clock import now_text
from app.connection import data_client
from app.enqueue import LOCK_TTL
from app.infobip.client import (
    InfobipAuthError,
    InfobipClient,
    InfobipError,
    InfobipUnavailable,
    InfobipUnknownOutcome,
)
from app.keys import OPTOUT, REPLIES_DUE, REPLIES_LOCK, REPLIES_SENT, REPLY
from app.optout.lists import ALL
from app.optout.replies import record
from workers.optout import kick_replies
from workers.settings import routes, settings

log = logging.getLogger(__name__)

BATCH = 20
TIME_BUDGET = 20.0  # seconds; then the job yields and a fresh one queues behind the others
BACKOFF = (2, 10, 30, 120, 600, 1800, 3600)  # seconds before retry n; then the reply fails
HOUR = 3600

# KEYS: the reply record, its number's sent-replies zset, its number's opt-out hash.
# ARGV: now (epoch), the cap, the receiver the reply goes out from.
_BEGIN = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'sending' then return status or 'gone' end
if redis.call('HGET', KEYS[1], 'kind') == 'route' and
   (redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 or redis.call('HEXISTS', KEYS[3], '*') == 1) then
  redis.call('HSET', KEYS[1], 'status', 'suppressed', 'reason', 'the number opted out')
  return 'suppressed'
end
local id = redis.call('HGET', KEYS[1], 'messageId')
if not redis.call('ZSCORE', KEYS[2], id) then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[1]) - 3600)
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then
    redis.call('HSET', KEYS[1], 'status', 'suppressed', 'reason',
               'over replies_per_sender_per_hour (' .. ARGV[2] .. ')')
    return 'suppressed'
  end
  redis.call('ZADD', KEYS[2], ARGV[1], id)
  redis.call('EXPIRE', KEYS[2], 3600)
end
redis.call('HSET', KEYS[1], 'status', 'sending', 'attemptAt', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
return 'send'
"""

# Give the lock up if ours; then say whether replies are due (the caller re-owns and goes on).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return redis.call('ZCOUNT', KEYS[2], '-inf', ARGV[2])
"""

_OWN = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then redis.call('EXPIRE', KEYS[1], ARGV[2]) return 1 end
if not owner then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) return 1 end
return 0
"""


def run(t: str = "") -> dict[str, int]:
    job = get_current_job()
    return send_due(data_client(job.connection), job.id, t)


def send_due(r: Redis, job_id: str, t: str, budget: float = TIME_BUDGET) -> dict[str, int]:
    """Send the due replies of the lane tagged `t` (every lane on one Redis: `t` is empty)."""
    totals: Counter[str] = Counter()
    lock, due_replies = REPLIES_LOCK.format(t=t), REPLIES_DUE.format(t=t)
    if not r.eval(_OWN, 1, lock, job_id, LOCK_TTL):
        return dict(totals)
    cfg = settings()
    client = InfobipClient.from_config(cfg, r)
    deadline = time.monotonic() + budget
    while True:
        due = r.zrangebyscore(due_replies, "-inf", time.time(), start=0, num=BATCH)
        if not due:
            if r.eval(_RELEASE, 2, lock, due_replies, job_id, time.time()) and \
                    r.eval(_OWN, 1, lock, job_id, LOCK_TTL):
                continue  # a reply became due while we were letting go
            break
        for inbound_id in (i.decode() for i in due):
            # Still ours, for one more call: a job whose lock lapsed (it was too slow) stops here
            # rather than work beside the one the sweep started.
            if not r.eval(_OWN, 1, lock, job_id, LOCK_TTL + int(cfg.get("INFOBIP_TIMEOUT") or 10)):
                totals["lockLost"] += 1
                return dict(totals)
            totals[process(r, client, cfg, inbound_id, t)] += 1
        if time.monotonic() > deadline:
            r.eval(_RELEASE, 2, lock, due_replies, job_id, 0)
            kick_replies(r, t)
            break
    log.info("replies job %s%s: %s", job_id, t, dict(totals))
    return dict(totals)


def process(r: Redis, client: InfobipClient | None, cfg: dict[str, Any], inbound_id: str, t: str) -> str:
    """Move one due reply of the lane tagged `t` on; returns what happened, for the job's totals."""
    key, due_replies = REPLY.format(t=t, message_id=inbound_id), REPLIES_DUE.format(t=t)
    rec = record(r, inbound_id, t)
    if rec is None or rec.get("status") not in ("queued", "sending"):
        r.zrem(due_replies, inbound_id)
        return "done"
    if client is None:
        _finish(r, inbound_id, t, status="disabled")
        return "disabled"
    if rec["status"] == "sending":  # an earlier attempt's outcome is unknown
        try:
            found = _look_up(client, rec["messageId"])
        except InfobipError:  # no answer is not "not sent": ask again later
            r.zadd(due_replies, {inbound_id: time.time() + float(cfg["REPLY_LOOKUP_DELAY"])})
            return "lookup-failed"
        if found is not None:
            _finish(r, inbound_id, t, status="sent", sentAt=found.get("sentAt") or now_text())
            return "found"
        wait_until = float(rec.get("attemptAt") or 0) + float(cfg["REPLY_LOOKUP_DELAY"])
        if time.time() < wait_until:  # Infobip's logs may not show it yet: look again then
            r.zadd(due_replies, {inbound_id: wait_until})
            return "waiting"
    cap = routes().optout.replies_per_sender_per_hour
    number = rec["to"]  # the MO's sender: its lane is this one, so the three keys share a slot
    begun = r.eval(_BEGIN, 3, key, REPLIES_SENT.format(t=t, msisdn=number), OPTOUT.format(t=t, msisdn=number),
                   time.time(), cap, rec["from"] or ALL).decode()
    if begun != "send":
        r.zrem(due_replies, inbound_id)
        return begun
    try:
        answer = client.send_advanced(_body(rec, cfg))
    except InfobipUnknownOutcome:
        # The request may have gone out: never resend blindly. Look it up after the delay.
        r.zadd(due_replies, {inbound_id: time.time() + float(cfg["REPLY_LOOKUP_DELAY"])})
        return "unknown"
    except (InfobipUnavailable, InfobipAuthError) as err:
        # Down, throttling, or our credentials refused (a key being rotated): a STOP must still
        # be confirmed once that is fixed, so these wait and retry; the client pauses the
        # feature meanwhile (app/infobip/status.py).
        attempt = int(rec.get("attempts") or 0)  # before this one
        if attempt >= len(BACKOFF):
            _finish(r, inbound_id, t, status="failed", error=str(err))
            return "failed"
        wait = max(BACKOFF[attempt] * random.uniform(0.5, 1.0), getattr(err, "retry_after", 0) or 0)
        r.hset(key, mapping={"status": "queued", "error": str(err)})
        r.zadd(due_replies, {inbound_id: time.time() + wait})
        return "retry"
    except InfobipError as err:  # refused (4xx): sending it again would not help
        _finish(r, inbound_id, t, status="failed", error=str(err))
        return "failed"
    sent = (answer.get("messages") or [{}])[0]
    group = (sent.get("status") or {}).get("groupName")
    _finish(r, inbound_id, t, status="sent", sentAt=now_text(), **({"accepted": group} if group else {}))
    return "sent"


def _finish(r: Redis, inbound_id: str, t: str, **fields: str) -> None:
    pipe = r.pipeline(transaction=True)
    pipe.hset(REPLY.format(t=t, message_id=inbound_id), mapping=fields)
    pipe.zrem(REPLIES_DUE.format(t=t), inbound_id)
    pipe.execute()


def _look_up(client: InfobipClient, message_id: str) -> dict[str, Any] | None:
    """The reply in Infobip's logs, or None. An unreachable Infobip says nothing: raise."""
    found = client.logs(messageId=message_id).get("results") or []
    return next((item for item in found if item.get("messageId") == message_id), None)


def _body(rec: dict[str, str], cfg: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "from": rec["from"], "destinations": [{"to": rec["to"], "messageId": rec["messageId"]}],
        "text": rec["text"], "callbackData": f"reply:{rec['inbound']}",
    }
    notify = notify_url(cfg)
    if notify:
        message |= {"notifyUrl": notify, "notifyContentType": "application/json"}
    return {"messages": [message]}


def notify_url(cfg: dict[str, Any]) -> str | None:
    """PUBLIC_URL/infobip/dlr with the ingest credentials (token, else Basic in the URL, as
    Infobip's notifyUrl allows). It holds a secret: it is built per send and never logged."""
    base = cfg.get("PUBLIC_URL")
    if not base:
        return None  # the report then waits at /sms/1/reports for the pull poller
    parts = urlsplit(base.rstrip("/") + "/infobip/dlr")
    if cfg.get("WEBHOOK_TOKEN"):
        return urlunsplit(parts._replace(query=f"token={quote(cfg['WEBHOOK_TOKEN'], safe='')}"))
    if cfg.get("WEBHOOK_BASIC_USER") and cfg.get("WEBHOOK_BASIC_PASSWORD"):
        names = ("WEBHOOK_BASIC_USER", "WEBHOOK_BASIC_PASSWORD")
        userinfo = ":".join(quote(cfg[name], safe="") for name in names)
        return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))
    return urlunsplit(parts)
