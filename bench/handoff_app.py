"""A reference point for the single-report ingest bar, not a baseline: the service's own durable
hand-off and nothing else. Read the body and hand it to Redis through app/group_commit.py,
exactly as ingest does (the requests a process has in hand share one write), then answer a
small JSON: no auth, parsing, validation, metrics or log line. Same gunicorn settings as the
service and bench/bare_app.py.

Whatever the service does besides the hand-off can only make it slower, so this is the most
the ingest bar can reach with a durable answer on this machine and fsync setting.
"""

from __future__ import annotations

import os

from flask import Flask, request
from redis import Redis

from app.enqueue import Write
from app.group_commit import GroupCommit

app = Flask(__name__)
handoff = GroupCommit(Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5, socket_connect_timeout=2),
                      quarantine_max=1)


@app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
@app.route("/<path:path>", methods=["GET", "POST"])
def anything(path: str):
    body = request.get_data(cache=False)
    if request.method == "POST":
        handoff.push(Write({0: [body]}))
    return {"ok": True}
