"""Remembering pure functions of small decoded objects.

A campaign's reports repeat a handful of small objects (a status, an error, a price), and
validating and classifying them is most of what ingest spends on a report. Functions of such an
object are computed once per distinct object and remembered by its JSON text, a key that keeps
each value's type: `1`, `1.0` and `True` are one key to Python's dict lookups, but not to a
schema. Callers keep an `lru_cache` of their own, keyed by that text. A remembered result is
shared: callers copy its top level and must not change anything inside it.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_KEY_BYTES = 1024  # larger objects are not remembered: the caches stay small


def json_key(value: Any) -> bytes | None:
    """The JSON text of a small object; None for anything else (not a dict, too large, or not
    writable as JSON, e.g. an integer beyond 64 bits): compute that one afresh."""
    if not isinstance(value, dict):
        return None
    try:
        key = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return None
    return key if len(key) <= MAX_KEY_BYTES else None
