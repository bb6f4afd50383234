"""Logging: one JSON object per line in production, readable text in `make run`.

Log lines carry their facts as fields (`log.info("delivery", extra={"consumer": ..., ...})`):
request id, event id, consumer, outcome, duration. Secrets never reach a log line: requests
are logged by path without the query string (it may hold the token), and nothing logs
headers or bodies. `LOG_FORMAT=text|json` chooses the format (default json).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else on a record was passed with `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_configured = False


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`12:00:01 INFO app.ingest request  path=/infobip/dlr status=200 duration_ms=1.2`"""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        text = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname} {record.name} {record.getMessage()}"
        text = f"{text}  {fields}" if fields else text
        return f"{text}\n{self.formatException(record.exc_info)}" if record.exc_info else text


def configure(level: str | None = None) -> None:
    """Add our handler to the root logger, once per process. Handlers others installed
    (gunicorn's, rq's, pytest's) stay: we only add ours."""
    global _configured
    if _configured:
        return
    _configured = True
    handler = logging.StreamHandler(sys.stderr)
    text = os.environ.get("LOG_FORMAT", "json").lower() == "text"
    handler.setFormatter(TextFormatter() if text else JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))
