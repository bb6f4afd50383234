"""gunicorn settings for the web tier (`gunicorn -c deploy/gunicorn.conf.py "app:create_app()"`).

One log line per request at most: the app's JSON line (app/metrics.py: request id, method,
path without its query string, status, duration; a delivered report's at DEBUG, everything
else at INFO). gunicorn's own access log would be a second line per request, ~8% of a worker's
CPU under load (docs/BENCHMARKS.md), so it is off; deploy/nginx.conf keeps one. Turned on
(`GUNICORN_CMD_ARGS="--access-logfile -"`), it too leaves out the query string (`%(U)s`, not
`%(r)s`): notifyUrls carry the ingest token as `?token=...`, and secrets must never reach logs.

gunicorn writes the raw request line of a request it refuses itself (bad bytes, bad header)
to the error log: that line holds the query string too, so the logger drops query strings.

MO forwards by GET carry the message in the URL (~20 KB for 2,000 Cyrillic characters with
their UCS-2 %bin%), and gunicorn refused request lines over 4,094 bytes with an HTML 414 that
Infobip met on every retry. Its limit cannot be set between 8,190 bytes and unlimited, so it is
unlimited (0) and the app caps URLs at MAX_URL_BYTES (64 KiB) with a JSON 414 and a quarantine
entry; nginx bounds the line in front (deploy/nginx.conf, large_client_header_buffers). What
gunicorn still refuses itself (a malformed request line or header, too many headers) is
answered in JSON too: see `json_error` below.

A request body must arrive within BODY_TIMEOUT seconds (default 15) in all: gthread reads a
body with no time limit of its own, so a client dripping its body a byte at a time held a
thread for ever, and WEB_CONCURRENCY x WEB_THREADS such clients stopped the service. A read
past the deadline fails; the app answers 408 and the connection is closed.
"""

import gc
import json
import logging
import multiprocessing
import os
import re
import shutil
import tempfile
import time

from gunicorn import util
from gunicorn.glogging import Logger

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "gthread"  # threads keep a slow client from holding a whole worker process
threads = int(os.environ.get("WEB_THREADS", "4"))
# Every worker process gets its own listening socket and the kernel spreads new connections
# over them. With one shared socket, whichever process woke first took a burst of connections:
# wrk's 8 keep-alive connections all landed on one process in 2 rounds of 5, and one core sat
# idle while that process did all the work at half the rate (docs/BENCHMARKS.md, "Session 3").
reuse_port = True
timeout = 30
graceful_timeout = 20
keepalive = 5
limit_request_line = 0  # unlimited: the app's MAX_URL_BYTES is the cap (see above)
accesslog = None  # the app logs every request (see above)
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss'
errorlog = "-"

# prometheus-client's multiprocess mode: every worker writes its counters to files here and
# /metrics adds them up (app/metrics.py). Set before the workers import prometheus_client.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"receiver-metrics-{os.getpid()}")
)


def on_starting(server):
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(path, ignore_errors=True)  # counts of an earlier run are not ours
    os.makedirs(path, exist_ok=True)


def when_ready(server):
    """With reuse_port the workers open the listening sockets, so gunicorn's own "Listening at:"
    line has no address in it: say where the service listens."""
    server.log.info("Listening at: http://%s (a socket per worker, reuse_port)", bind)


def post_worker_init(worker):
    """The app is loaded: its ~54,000 objects (Flask, marshmallow, redis-py, the code tables)
    live as long as the worker. Frozen, they leave the garbage collector's full passes, which
    took ~50 ms each, a pause for every request in flight (docs/BENCHMARKS.md, latency)."""
    gc.freeze()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


_QUERY = re.compile(r"\?[^\s'\"]*")


class _NoQueryStrings(logging.Filter):
    def filter(self, record):
        record.msg, record.args = _QUERY.sub("?(query left out)", record.getMessage()), ()
        return True


class QuerylessLogger(Logger):
    """gunicorn's logger; its error log never shows a query string (tokens in notifyUrls)."""

    def setup(self, cfg):
        super().setup(cfg)
        self.error_log.addFilter(_NoQueryStrings())


logger_class = QuerylessLogger

body_timeout = float(os.environ.get("BODY_TIMEOUT", "15"))


class _BodyDeadline:
    """The request's socket as gunicorn's body reader sees it: every recv waits only until one
    deadline for the whole body (a timeout per recv would never fire for a byte a second)."""

    def __init__(self, sock, deadline):
        self.sock, self.deadline = sock, deadline

    def _arm(self):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request body not received in time")
        self.sock.settimeout(remaining)

    def recv(self, *args):
        self._arm()
        return self.sock.recv(*args)

    def recv_into(self, *args):
        self._arm()
        return self.sock.recv_into(*args)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def pre_request(worker, req):
    unreader = getattr(req, "unreader", None)
    if hasattr(unreader, "sock"):
        unreader.sock = _BodyDeadline(unreader.sock, time.monotonic() + body_timeout)


def post_request(worker, req, environ, resp):
    """The connection may serve another request (keep-alive): give it its plain socket back."""
    unreader = getattr(req, "unreader", None)
    wrapped = getattr(unreader, "sock", None)
    if isinstance(wrapped, _BodyDeadline):
        unreader.sock = wrapped.sock
        wrapped.sock.settimeout(None)


def json_error(sock, status_int, reason, mesg):
    """What gunicorn writes for a request it refuses before the app sees it (its
    `util.write_error`, called by every worker's `handle_error`), as the app's JSON errors
    instead of an HTML page: Infobip and operators only ever get JSON (SPEC §2.3)."""
    message = _QUERY.sub("?(query left out)", mesg)  # a refused line may hold the token
    body = json.dumps({"error": reason.lower().replace(" ", "_"), "message": message}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


util.write_error = json_error  # gunicorn has no setting for its error pages; the workers call this
