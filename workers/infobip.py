"""The jobs that talk to Infobip, scheduled by `rq cron` (workers/cron.py): pull and reconcile.

Why rq cron rather than a job that re-enqueues itself: a self-rescheduling chain stops for good
the first time one link is lost (a worker SIGKILLed between running and re-enqueueing, a
Redis blip at the wrong moment), and nothing notices. The scheduler process already runs the
sweep every 10 s; it enqueues these every PULL_INTERVAL seconds whatever happened before.
Overlap is harmless: each job takes its feature's lease first (app/infobip/lease.py), so a
tick that finds a poller running does nothing. A pull job that found full pages queues one
follow-up at once (behind the drain jobs its pages started), so a backlog is fetched at full
speed and the drains keep up.
"""

from __future__ import annotations

from typing import Any

from rq import Queue, get_current_job

from app.connection import data_client, queue_client
from app.infobip import pull, reconcile
from app.infobip.client import InfobipClient
from app.keys import QUEUE_NAME
from workers.settings import settings

JOB_TIMEOUT = 300


def pull_reports() -> dict[str, Any]:
    return _pull(pull.REPORTS, pull_reports)


def pull_inbox() -> dict[str, Any]:
    return _pull(pull.INBOX, pull_inbox)


def _pull(feed: pull.Feed, again: Any) -> dict[str, Any]:
    r = data_client(get_current_job().connection)
    client = InfobipClient.from_config(settings(), r)
    if client is None:
        return {"skipped": "INFOBIP_BASE_URL is not set"}
    figures = pull.poll(r, settings(), client, feed)
    if figures.get("more"):
        Queue(QUEUE_NAME, connection=queue_client(r)).enqueue(again, job_timeout=JOB_TIMEOUT, result_ttl=0,
                                                description=f"pull {feed.name} (more waiting)")
    return figures


def reconcile_run() -> dict[str, Any]:
    r = data_client(get_current_job().connection)
    cfg = settings()
    client = InfobipClient.from_config(cfg, r)
    if client is None or not cfg["RECONCILE_AFTER"]:
        return {"skipped": "reconciliation is off"}
    return reconcile.run(r, cfg, client)
