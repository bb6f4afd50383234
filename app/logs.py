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
from functools import lru_cache

import orjson

# Attributes every LogRecord has; anything else on a record was passed with `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_configured = False


@lru_cache(maxsize=4)
def _second(epoch: int) -> str:
    """'2026-12-02T06:00:01' for a whole second: the part of a timestamp that lines share."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _dumps(line: dict) -> str:
    """orjson writes a request's line in a fifth of the instructions `json` takes (the web tier
    writes one per request); it refuses integers beyond 64 bits, which `json` writes."""
    try:
        return orjson.dumps(line, default=str).decode()
    except TypeError:
        return json.dumps(line, ensure_ascii=False, default=str)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": f"{_second(int(record.created))}.{int(record.msecs):03d}+00:00",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _dumps(line)


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
    # What no line here, gunicorn's or rq's prints, a record need not look up (the logging
    # HOWTO's "Optimization"): the caller's file, line and function, and the thread's and
    # multiprocessing process's names. ~10% of a request's log line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    text = os.environ.get("LOG_FORMAT", "json").lower() == "text"
    handler.setFormatter(TextFormatter() if text else JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))
