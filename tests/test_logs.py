"""Log formats: one JSON object per line (production), readable text (make run)."""

from __future__ import annotations

import json
import logging

from app.logs import JsonFormatter, TextFormatter


def record(**extra) -> logging.LogRecord:
    rec = logging.LogRecord("workers.deliver", logging.INFO, __file__, 1, "delivery", None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_lines_carry_the_extra_fields():
    rec = record(event_id="evt_1", consumer="crm", outcome="delivered", duration_ms=3.2)
    line = JsonFormatter().format(rec)
    parsed = json.loads(line)
    assert "\n" not in line
    assert parsed["msg"] == "delivery" and parsed["level"] == "info" and parsed["logger"] == "workers.deliver"
    assert (parsed["event_id"], parsed["consumer"], parsed["outcome"], parsed["duration_ms"]) == (
        "evt_1", "crm", "delivered", 3.2)


def test_text_lines_read_like_a_sentence_with_fields():
    line = TextFormatter().format(record(consumer="crm", outcome="failed"))
    assert line.endswith("INFO workers.deliver delivery  consumer=crm outcome=failed")


def test_exceptions_stay_in_one_json_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = record()
        rec.exc_info = sys.exc_info()
    parsed = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in parsed["exc"]


def test_json_lines_keep_what_orjson_refuses():
    """orjson writes the line; an integer beyond 64 bits (it refuses them) still gets logged."""
    parsed = json.loads(JsonFormatter().format(record(big=2**70, when=object())))
    assert parsed["big"] == 2**70 and parsed["when"].startswith("<object object")


def test_json_timestamps_are_utc_with_milliseconds():
    rec = record()
    rec.created, rec.msecs = 1764655201.25, 250.0  # 2025-12-02T06:00:01.250 UTC
    assert json.loads(JsonFormatter().format(rec))["ts"] == "2025-12-02T06:00:01.250+00:00"
