"""A reference point for the single-report ingest bar, not a baseline: the least a durable
hand-off can do. Read the body, LPUSH it to Redis as it is (no auth, no parsing, no
validation), answer a small JSON. Same gunicorn settings as the service and bench/bare_app.py.

The issue quotes "a single LPUSH of the body" at 0.63x bare Flask; the bench measures it in
the same run, so the service's ratio can be read against what Redis alone costs here.
"""

from __future__ import annotations

import os

from flask import Flask, request
from redis import Redis

app = Flask(__name__)
redis = Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5, socket_connect_timeout=2)


@app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
@app.route("/<path:path>", methods=["GET", "POST"])
def anything(path: str):
    body = request.get_data(cache=False)
    if request.method == "POST":
        redis.lpush("bench:lpush", body)
    return {"ok": True}
