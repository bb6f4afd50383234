"""Schedule of periodic jobs, for `rq cron workers/cron.py` (the `scheduler` process)."""

from rq import cron

from app.keys import QUEUE_NAME
from workers import sweep

cron.register(sweep.run, QUEUE_NAME, interval=10, job_timeout=120, result_ttl=0)
