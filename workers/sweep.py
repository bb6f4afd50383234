"""Periodic housekeeping, run by `rq cron workers/cron.py` every few seconds.

- A lane with waiting items and no drain job (its lock expired, or an enqueue failed after
  the items were written) gets one.
- A claimed batch whose job is gone, failed for good or finished without applying it goes
  back to its inbox: RQ retries most crashed jobs itself; this catches the rest.
- Index entries older than the retention period are trimmed (message hashes expire alone).
"""

from __future__ import annotations

import time
from collections import Counter

from redis import Redis
from rq import get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from app import enqueue
from app.keys import BATCH, INBOX, INDEX_ALL
from workers.settings import settings

LIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def run() -> dict[str, int]:
    return sweep(get_current_job().connection)


def sweep(r: Redis) -> dict[str, int]:
    cfg = settings()
    done: Counter[str] = Counter()
    for key in r.scan_iter(match=BATCH.format(lane="*", job_id="*"), count=1000):
        _, lane, job_id = key.decode().split(":")
        if not _is_live(r, job_id):
            done["handedBack"] += enqueue.hand_back(r, int(lane), job_id)
    for lane in range(cfg["DRAIN_LANES"]):
        if r.llen(INBOX.format(lane=lane)) and enqueue.kick(r, lane):
            done["kicked"] += 1
    cutoff = time.time() - cfg["RETENTION_SECONDS"]
    done["expiredIndex"] = r.zremrangebyscore(INDEX_ALL, "-inf", cutoff)
    return dict(done)


def _is_live(r: Redis, job_id: str) -> bool:
    try:
        return Job.fetch(job_id, connection=r).get_status() in LIVE
    except NoSuchJobError:
        return False
