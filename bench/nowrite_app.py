"""A reference point for the single-report ingest bar, not a baseline: the service with its Redis
write taken out. It is `create_app()` as gunicorn serves it (auth, decode, marshmallow, the
envelope, metrics, the JSON log line), except that the group commit returns at once instead of
writing. Same gunicorn settings as the service and bench/bare_app.py.

With bench/handoff_app.py (the write and nothing else) it splits the service's cost per request
in two: what its own work costs and what the durable write costs. Bar 2 needs the two together
to cost no more than bare Flask's whole request (docs/BENCHMARKS.md, session 5).
"""

from __future__ import annotations

from app import create_app
from app.enqueue import Write


class NoWrite:
    """Stands in for app.group_commit.GroupCommit: takes the write and drops it."""

    def push(self, write: Write) -> None:
        return None


app = create_app()
app.extensions["group_commit"] = NoWrite()
