"""The baseline web app: read the body, answer a small JSON. Nothing else.

Served by the same gunicorn settings as the service (`-c deploy/gunicorn.conf.py`, same
WEB_CONCURRENCY and WEB_THREADS), so ingest's requests/s can be stated as a ratio of what Flask
and gunicorn alone do on this machine in the same run (docs/BENCHMARKS.md).
"""

from __future__ import annotations

from flask import Flask, request

app = Flask(__name__)


@app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
@app.route("/<path:path>", methods=["GET", "POST"])
def anything(path: str):
    body = request.get_data(cache=False)
    return {"ok": True, "bytes": len(body)}
