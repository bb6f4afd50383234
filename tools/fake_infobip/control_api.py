"""The control API under `/_fake/` (no auth: for tests and demos on 127.0.0.1).

- `GET health`: `{"ok": true}` once the server answers.
- `POST reset`: forget everything (messages, logs, queues, faults, clock, withholds).
- `POST reports`: `{"reports": [...]}`, or `{"count": n, "bulkId"?, "status"?, "error"?, "to"?}`
  generated: reports for `/sms/1/reports`, and for the logs unless `"logged": false`.
- `POST inbox`: `{"messages": [...]}` or `{"count": n, "text"?}`: for `/sms/1/inbox/reports`.
- `POST faults`: `{"path", "count"?, "status"?, "retryAfter"?, "hang"?, "drop"?, "apply"?,
  "method"?}`: the next `count` calls of `path` get `status` (503 unless told, `Retry-After`
  with `retryAfter`), or are read and then held (`hang`) or cut (`drop`) without an answer;
  with `apply` the request takes effect first. `GET faults` lists, `DELETE faults` clears.
- `POST release`: let go of held requests (their connection is closed, still unanswered).
- `POST withhold`: `{"all": bool}` and/or `{"messageIds": [...]}`: those reports are not
  pushed (lost, as after Infobip's 41.5 h of retries; the logs keep them).
- `POST outcomes`: `{"<to>": {"status": id, "error": id}}`: the final report a number gets.
- `POST clock`: `{"advance": seconds}`: move the fake's clock (and the 48 h log window).
- `POST settings`: `{"notifyDelay"?: seconds, "retryScale"?: factor}`.
- `GET sends`, `GET pushes`, `GET calls`: what clients sent; every push attempt; every API
  call with its answer (`status` null: held or cut). `GET pending`: reports and inbound
  messages waiting to be pulled.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask, request

from tools.fake_infobip.model import Fault, infobip_time
from tools.fake_infobip.server import Fake, new_report


def register(app: Flask, fake: Fake) -> None:
    model = fake.model

    def body() -> dict[str, Any]:
        return request.get_json(silent=True) or {}

    @app.get("/_fake/health")
    def health() -> Any:
        return {"ok": True}

    @app.post("/_fake/reset")
    def reset() -> Any:
        fake.reset()
        return {"ok": True}

    @app.post("/_fake/reports")
    def add_reports() -> Any:
        given = body()
        reports = given.get("reports")
        if reports is None:
            now = model.now()
            extra = {k: given[k] for k in ("bulkId", "status", "error", "to", "callbackData") if k in given}
            reports = [new_report(now, **extra) for _ in range(int(given.get("count", 1)))]
        model.add_reports(reports, logged=given.get("logged", True))
        return {"added": len(reports), "messageIds": [r.get("messageId") for r in reports]}

    @app.post("/_fake/inbox")
    def add_inbox() -> Any:
        given = body()
        messages = given.get("messages")
        if messages is None:
            at = infobip_time(model.now())
            text = given.get("text", "KEY Test message")
            keyword, _, clean = text.partition(" ")
            messages = [{"messageId": str(uuid.uuid4()), "from": given.get("from", "38598111"),
                         "to": given.get("to", "41793026727"), "text": text, "cleanText": clean,
                         "keyword": keyword, "receivedAt": at, "smsCount": 1}
                        for _ in range(int(given.get("count", 1)))]
        with model.lock:
            model.inbox.extend(messages)
        return {"added": len(messages), "messageIds": [m.get("messageId") for m in messages]}

    @app.route("/_fake/faults", methods=["GET", "POST", "DELETE"])
    def faults() -> Any:
        with model.lock:
            if request.method == "POST":
                given = body()
                model.faults.append(Fault(
                    path=given["path"], count=int(given.get("count", 1)),
                    status=int(given.get("status", 503)),
                    retry_after=given.get("retryAfter"), hang=bool(given.get("hang")),
                    drop=bool(given.get("drop")), apply=bool(given.get("apply")), method=given.get("method")))
            elif request.method == "DELETE":
                model.faults.clear()
            return {"faults": [vars(f) for f in model.faults]}

    @app.post("/_fake/release")
    def release() -> Any:
        old, fake.release = fake.release, type(fake.release)()
        old.set()
        return {"ok": True}

    @app.post("/_fake/withhold")
    def withhold() -> Any:
        given = body()
        with model.lock:
            model.withhold_all = bool(given.get("all", model.withhold_all))
            model.withheld_ids.update(given.get("messageIds", []))
            return {"all": model.withhold_all, "messageIds": sorted(model.withheld_ids)}

    @app.post("/_fake/outcomes")
    def outcomes() -> Any:
        with model.lock:
            for to, outcome in body().items():
                model.outcomes[to] = (int(outcome.get("status", 5)), int(outcome.get("error", 0)))
            return {"outcomes": {to: {"status": s, "error": e} for to, (s, e) in model.outcomes.items()}}

    @app.post("/_fake/clock")
    def clock() -> Any:
        with model.lock:
            model.offset += float(body().get("advance", 0))
            return {"now": infobip_time(model.now()), "offset": model.offset}

    @app.post("/_fake/settings")
    def settings() -> Any:
        given, timeline = body(), fake.timeline
        timeline.notify_delay = float(given.get("notifyDelay", timeline.notify_delay))
        timeline.retry_scale = float(given.get("retryScale", timeline.retry_scale))
        return {"notifyDelay": timeline.notify_delay, "retryScale": timeline.retry_scale}

    @app.get("/_fake/<any(sends, pushes, calls):what>")
    def listing(what: str) -> Any:
        with model.lock:
            return {"results": list(getattr(model, what))}

    @app.get("/_fake/pending")
    def pending() -> Any:
        with model.lock:
            return {"reports": len(model.reports), "inbox": len(model.inbox)}
