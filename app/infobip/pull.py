"""Pull mode (SPEC §9.1): where a pulled report or inbound message enters.

For deployments Infobip cannot reach: `GET /sms/1/reports` and `GET /sms/1/inbox/reports`
serve each item ONCE, so a fetched page exists nowhere but in this process until it is in
Redis. Hence the order of `poll()`:

1. take the feature's lock (one poller at a time across all workers; it expires, so a
   SIGKILLed poller blocks nobody for longer than LOCK_TTL);
2. fetch a page (app/infobip/client.py: timeouts, backoff, Retry-After, auth backoff);
3. hand it over with `app.handoff.accept(..., source="pull")` BEFORE anything else: the same
   validation, quarantine (of the page body, for its bad items), lanes and event ids as a
   push, in one atomic write. A Redis refusal is retried for a while with the page in hand;
4. a full page means more are waiting: fetch again at once, up to PAGES_PER_JOB pages per job,
   then a follow-up job is queued behind the drain jobs that the pages just started, so
   pulling never starves the workers that apply what it pulled.

The one loss window left: the process dies (or Redis refuses the write for longer than
HANDOVER_TRIES) between Infobip's answer and the write. docs/RELIABILITY.md says how
reconciliation (`/sms/1/logs`, repeatable) covers it for reports, and that nothing covers it
for pulled inbound messages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from redis import Redis, RedisError

from app import handoff
from app.infobip.client import InfobipClient, InfobipError
from app.infobip.lease import Lease
from app.keys import PULL_LOCK

log = logging.getLogger(__name__)

LOCK_TTL = 30  # seconds; renewed before every fetch (app/infobip/lease.py)
PAGES_PER_JOB = 10  # then a follow-up job, queued behind the drain jobs
HANDOVER_TRIES = 8  # a Redis that refuses a pulled page is asked again, 0.5 s .. 16 s apart

@dataclass(frozen=True)
class Feed:
    """One pulled endpoint: the client call, the hand-off kind, the push endpoint a
    quarantined page replays through."""

    name: str  # PULL_LOCK's {feature}, and the client's feature name
    kind: str
    path: str

    def fetch(self, client: InfobipClient, limit: int) -> dict[str, Any]:
        return client.reports(limit) if self.kind == "dlr" else client.inbox(limit)

    def raw_items(self, results: list[Any]) -> list[Any]:
        """Inbound items go through app.mo as Infobip's pull shape (tagged "pull")."""
        return results if self.kind == "dlr" else [("pull", item) for item in results]


REPORTS = Feed("pull-reports", "dlr", "/infobip/dlr")
INBOX = Feed("pull-inbox", "mo", "/infobip/mo")


def poll(r: Redis, config: Mapping[str, Any], client: InfobipClient, feed: Feed,
         max_pages: int = PAGES_PER_JOB) -> dict[str, Any]:
    """Fetch and hand over pages of `feed` while they come back full (at most `max_pages`).
    Returns figures; `more` is true when the last page was full (the caller pulls again)."""
    lease = Lease(r, PULL_LOCK.format(feature=feed.name), LOCK_TTL)
    if not lease.take():
        return {"skipped": "another poller holds the lock"}
    limit = int(config["PULL_LIMIT"])
    figures: dict[str, Any] = {"pages": 0, "accepted": 0, "rejected": 0, "more": False}
    try:
        for _ in range(max_pages):
            if not lease.renew():
                break  # our lock lapsed (a very slow call): the next poller goes on
            try:
                page = feed.fetch(client, limit)
            except InfobipError as err:  # the client recorded the feature's health and backoff
                figures["error"] = type(err).__name__
                break
            results = page.get("results")
            if not isinstance(results, list):
                figures["error"] = "answer without a results list"
                break
            figures["pages"] += 1
            if results:
                answer = hand_over(r, config, feed, results, page)
                figures["accepted"] += answer["accepted"]
                figures["rejected"] += len(answer["rejected"])
            figures["more"] = len(results) >= limit
            if not figures["more"]:
                break
    finally:
        lease.release()
    quiet = not figures.get("accepted") and not figures.get("rejected") and "error" not in figures
    (log.debug if quiet else log.info)("pull", extra={"feature": feed.name, **figures})  # not every 5 s
    return figures


def hand_over(r: Redis, config: Mapping[str, Any], feed: Feed, results: list[Any],
              page: dict[str, Any], tries: int = HANDOVER_TRIES) -> dict[str, Any]:
    """`handoff.accept` of one page, asked again while Redis refuses it: the page is gone from
    Infobip, this process holds the only copy. After the last try the page is lost and logged
    (message ids only: no text, no secret) for an operator, and the error is raised."""
    body = orjson.dumps(page)
    for attempt in range(tries):
        try:
            return handoff.accept(r, config, feed.kind, feed.raw_items(results), source="pull",
                                  body=body, path=feed.path)
        except RedisError as err:
            if attempt == tries - 1:
                ids = [item.get("messageId") for item in results if isinstance(item, dict)]
                log.error("pulled page lost: Redis refused it", extra={
                    "feature": feed.name, "error": type(err).__name__, "messageIds": ids})
                raise
            time.sleep(min(0.5 * 2**attempt, 16.0))
    raise AssertionError("unreachable")
