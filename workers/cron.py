"""Schedule of periodic jobs, for `rq cron workers/cron.py` (the `scheduler` process)."""

from rq import cron

from app.keys import QUEUE_NAME
from workers import infobip, sweep
from workers.settings import settings

cron.register(sweep.run, QUEUE_NAME, interval=10, job_timeout=120, result_ttl=0)

# SPEC §9: pull mode and reconciliation, when configured (workers/infobip.py says why rq cron).
_cfg = settings()
if _cfg["PULL_REPORTS"]:
    cron.register(infobip.pull_reports, QUEUE_NAME, interval=_cfg["PULL_INTERVAL"],
                  job_timeout=infobip.JOB_TIMEOUT, result_ttl=0)
if _cfg["PULL_INBOX"]:
    cron.register(infobip.pull_inbox, QUEUE_NAME, interval=_cfg["PULL_INTERVAL"],
                  job_timeout=infobip.JOB_TIMEOUT, result_ttl=0)
if _cfg["RECONCILE_AFTER"] and _cfg.get("INFOBIP_BASE_URL"):
    # A run every quarter of RECONCILE_AFTER, between 5 s and a minute.
    cron.register(infobip.reconcile_run, QUEUE_NAME, interval=max(5, min(60, _cfg["RECONCILE_AFTER"] // 4)),
                  job_timeout=infobip.JOB_TIMEOUT, result_ttl=0)
