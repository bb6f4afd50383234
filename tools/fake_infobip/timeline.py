"""What happens after a send: reports, and their pushes to the message's `notifyUrl`.

One scheduler thread keeps a heap of due work:
- a message's reports: with `intermediateReport`, an intermediate one (PENDING, EC_ABSENT_SUBSCRIBER,
  as in the seed's example) after `notify_delay`, then the final one after twice that;
  otherwise the final one after `notify_delay`;
- a due report goes to its `notifyUrl` as JSON `{"results": [...]}` (reports due together for
  one URL share a push, as Infobip buckets them), unless pushes are withheld; without a
  `notifyUrl` it is kept for `GET /sms/1/reports` (intermediate reports are push-only);
- a push answered with anything but 2xx, or not answered, is retried on Infobip's cycle
  (1 min + 1 min × n², 20 attempts in 41.5 h), scaled by `retry_scale` so tests take seconds.
  After the last attempt the report is lost, as the seed says: only the logs still have it.
Every push attempt is recorded (`GET /_fake/pushes`). `reset()` forgets pending work.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import urllib3
import xmltodict

from app.routes import INFOBIP_RETRY_SCHEDULE
from tools.fake_infobip.model import Model, infobip_time
from workers.webhook import split_userinfo

log = logging.getLogger(__name__)
PUSH_TIMEOUT = 5.0
MAX_BUCKET = 100  # reports per push


def encode(reports: list[dict[str, Any]], content_type: str) -> bytes:
    """JSON `{"results": [...]}`, or for `notifyContentType: application/xml` the seed's XML:
    root `<reportResponse>`, one `<results>` element per report, booleans as `true`/`false`."""
    if content_type != "application/xml":
        return orjson.dumps({"results": reports})

    def text(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: text(v) for k, v in value.items()}
        return str(value).lower() if isinstance(value, bool) else value

    return xmltodict.unparse({"reportResponse": {"results": [text(r) for r in reports]}}).encode()


class Timeline:
    def __init__(self, model: Model, notify_delay: float, retry_scale: float) -> None:
        self.model = model
        self.notify_delay = notify_delay
        self.retry_scale = retry_scale
        self._heap: list[tuple[float, int, int, str, Any]] = []
        self._seq = itertools.count()
        self._generation = 0  # bumped by reset(): work of an older generation is dropped
        self._wake = threading.Condition()
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="fake-push")
        self._http = urllib3.PoolManager(retries=False, timeout=PUSH_TIMEOUT)
        threading.Thread(target=self._run, name="fake-timeline", daemon=True).start()

    def reset(self) -> None:
        with self._wake:
            self._heap.clear()
            self._generation += 1

    def sent(self, message_ids: list[str]) -> None:
        """Schedule the reports of newly accepted messages."""
        now = time.monotonic()
        for message_id in message_ids:
            message = self.model.messages[message_id]
            if message.intermediate and message.notify_url:
                self._at(now + self.notify_delay, "report", (message_id, True))
                self._at(now + 2 * self.notify_delay, "report", (message_id, False))
            else:
                self._at(now + self.notify_delay, "report", (message_id, False))

    def _at(self, due: float, kind: str, payload: Any) -> None:
        with self._wake:
            heapq.heappush(self._heap, (due, next(self._seq), self._generation, kind, payload))
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._wake.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                due = []
                while self._heap and self._heap[0][0] <= time.monotonic():
                    due.append(heapq.heappop(self._heap))
                generation = self._generation
            try:
                self._tick(generation, [entry[2:] for entry in due])
            except Exception:  # the fake must go on making reports whatever one tick met
                log.exception("fake Infobip timeline tick failed")

    def _tick(self, generation: int, due: list[tuple[int, str, Any]]) -> None:
        buckets: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for gen, kind, payload in due:
            if gen != generation:
                continue
            if kind == "push":
                self._pool.submit(self._push, gen, *payload)
                continue
            message_id, intermediate = payload
            try:
                report, message = self.model.report(message_id, intermediate)
            except KeyError:  # forgotten by a reset() that raced with this tick
                continue
            if not message.notify_url:
                self.model.add_reports([report], logged=False)
            elif self.model.withheld(message_id):
                self._record(message.notify_url, [report], 0, None, "withheld")
            else:
                buckets.setdefault((message.notify_url, message.content_type), []).append(report)
        for (url, content_type), reports in buckets.items():
            for start in range(0, len(reports), MAX_BUCKET):
                bucket = reports[start:start + MAX_BUCKET]
                self._pool.submit(self._push, generation, url, content_type, bucket, 0)

    def _push(self, generation: int, url: str, content_type: str, reports: list[dict[str, Any]],
              attempt: int) -> None:
        target, headers = split_userinfo(url)
        try:
            answer = self._http.request("POST", target, body=encode(reports, content_type),
                                        headers={**headers, "Content-Type": content_type})
            status, error = answer.status, None
        except urllib3.exceptions.HTTPError as err:
            status, error = None, type(err).__name__
        if generation != self._generation:
            return
        outcome = "delivered" if status and 200 <= status < 300 else "failed"
        self._record(url, reports, attempt, status, outcome if error is None else f"failed: {error}")
        if outcome == "failed" and attempt + 1 < len(INFOBIP_RETRY_SCHEDULE):
            delay = INFOBIP_RETRY_SCHEDULE[attempt] * self.retry_scale
            self._at(time.monotonic() + delay, "push", (url, content_type, reports, attempt + 1))

    def _record(self, url: str, reports: list[dict[str, Any]], attempt: int, status: int | None,
                outcome: str) -> None:
        target, _ = split_userinfo(url)
        with self.model.lock:
            self.model.pushes.append({
                "url": target, "attempt": attempt, "status": status, "outcome": outcome,
                "messageIds": [r["messageId"] for r in reports], "reports": reports,
                "at": infobip_time(self.model.now())})
