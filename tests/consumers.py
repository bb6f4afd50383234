"""A real HTTP consumer for fan-out tests: a ThreadingHTTPServer on 127.0.0.1, scripted per test.

Each consumer of a routes file gets its own path on the server (`/crm`, `/audit`, ...). A test
scripts the answers of a path in order (`server.script("/crm", Answer(500), Answer(500))`),
after which the path answers its `then` answer (200 unless told). Every request is recorded
with its answer, so a test counts what the consumer saw and what it acknowledged with a 2xx:
the "delivered exactly once" checks count 2xx-answered bodies by event id at the server.

`Answer(hang=True)` blocks the handler until the test ends (longer than any consumer timeout),
then drops the connection without answering: a slow consumer. A stopped server is a closed
port (connection refused); `start()` brings it back on the same port.
"""

from __future__ import annotations

import base64
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from standardwebhooks import Webhook

SECRET = "whsec_" + base64.b64encode(b"fanout-consumer-secret-0123456789").decode()


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # block until the test ends, then close without answering


OK = Answer(200)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    status: int | None  # what we answered; None: no answer (hung)

    @property
    def event_id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def event(self) -> dict[str, Any]:
        return orjson.loads(self.body)

    def verify(self, secret: str = SECRET) -> Any:
        """The event, checked with the PyPI `standardwebhooks` package, as a consumer would."""
        return Webhook(secret).verify(self.body, self.headers)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the delivery pool expects
    server: _Listener

    def log_message(self, *_args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        owner = self.server.owner
        answer = owner.next_answer(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner.record(Seen(self.path, headers, body, None if answer.hang else answer.status))
        if answer.hang:
            owner.release.wait(120)
            self.close_connection = True
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Listener(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: ConsumerServer) -> None:
        super().__init__(("127.0.0.1", owner.port), Handler)
        self.owner = owner

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client gave up (timeouts): nothing to report


class ConsumerServer:
    """One scripted consumer endpoint host; `stop()` then `start()` keeps the port."""

    def __init__(self) -> None:
        self.port = 0
        self.seen: list[Seen] = []
        self.plans: dict[str, deque[Answer]] = {}
        self.then: dict[str, Answer] = {}
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.httpd: _Listener | None = None
        self.thread: threading.Thread | None = None

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> ConsumerServer:
        httpd = _Listener(self)
        self.port = httpd.server_address[1]
        self.httpd = httpd
        self.thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: the port now refuses connections."""
        if self.httpd is None:
            return
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.thread:
            self.thread.join(5)
        self.httpd = None

    def close(self) -> None:
        self.release.set()  # let hung handlers go
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- script and record ------------------------------------------------------------------

    def script(self, path: str, *answers: Answer, then: Answer = OK) -> None:
        with self.lock:
            self.plans[path] = deque(answers)
            self.then[path] = then

    def next_answer(self, path: str) -> Answer:
        with self.lock:
            plan = self.plans.get(path)
            if plan:
                return plan.popleft()
            return self.then.get(path, OK)

    def record(self, seen: Seen) -> None:
        with self.lock:
            self.seen.append(seen)

    def requests(self, path: str | None = None) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if path is None or s.path == path]

    def delivered(self, path: str | None = None) -> Counter[str]:
        """Event id -> how many times this path answered it with a 2xx."""
        return Counter(s.event_id for s in self.requests(path) if s.status and 200 <= s.status < 300)


def http_consumer(name: str, url: str, *, events: str = "", retry_schedule: str = "[0, 0, 0]",
                  timeout: float = 2, secret: str = SECRET) -> str:
    """One consumer entry of a routes file (YAML text)."""
    lines = [f"  - name: {name}", f"    url: {url}", f"    secret: {secret}",
             f"    retry_schedule: {retry_schedule}", f"    timeout: {timeout:g}"]
    if events:
        lines.append(f"    events: {events}")
    return "\n".join(lines) + "\n"


def stream_consumer(name: str, stream: str, *, events: str = "", maxlen: int | None = None) -> str:
    lines = [f"  - name: {name}", "    type: redis-stream", f"    stream: {stream}"]
    if events:
        lines.append(f"    events: {events}")
    if maxlen is not None:
        lines.append(f"    maxlen: {maxlen}")
    return "\n".join(lines) + "\n"


def routes_text(*consumers: str, mo_routes: str = "") -> str:
    text = "consumers:\n" + "".join(consumers)
    return text + (f"mo_routes:\n{mo_routes}" if mo_routes else "")
