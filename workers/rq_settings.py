"""RQ's own settings for every `rq` process (Procfile: `rq worker -c workers.rq_settings`,
`rq cron -c workers.rq_settings`): RQ reads the UPPERCASE names here.

Through Sentinel when `REDIS_SENTINELS` is set (RQ's `SENTINEL` dict: each new connection asks
the sentinels for the primary, so a worker follows a failover), else `REDIS_URL`; the choice
is app/connection.py's, the same as the web tier's.
"""

from app import config
from app.connection import rq_settings

_chosen = rq_settings(config.load())
REDIS_URL = _chosen["REDIS_URL"]
SENTINEL = _chosen["SENTINEL"]
