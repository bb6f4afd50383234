"""gunicorn settings for the web tier (`gunicorn -c deploy/gunicorn.conf.py "app:create_app()"`).

The access log leaves out the query string (`%(U)s`, not `%(r)s`): notifyUrls carry the
ingest token as `?token=...`, and secrets must never reach logs.
"""

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "gthread"  # threads keep a slow client from holding a whole worker process
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss'
errorlog = "-"
