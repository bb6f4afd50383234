"""Slow and malformed clients against the real gunicorn (deploy/gunicorn.conf.py).

- Slow drip: a client sends its headers with a Content-Length, then the body a byte a second.
  gthread alone would wait for ever; BODY_TIMEOUT (15 s by default) bounds the whole body, the
  app answers 408 and the connection is closed, while normal requests on other connections
  keep getting 200. (Fewer slow clients than WEB_CONCURRENCY x WEB_THREADS threads; beyond
  that the reverse proxy's buffering is the defence: deploy/nginx.conf.)
- Raw requests no test client can send: non-ASCII bytes in the request target, CRLF and bare CR
  in headers, Content-Length with Transfer-Encoding, two Content-Lengths, a huge header. Never
  a 5xx, no injected header in an answer, the server goes on serving, no secret in its logs.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time

import orjson
import pytest

from app.keys import QUARANTINE
from tests.conftest import TOKEN
from tests.faults.harness import assert_no_secret_in_logs, report_figures, request, wait_for
from tests.samples import push, report

pytestmark = pytest.mark.faults

SLOW_CLIENTS = 3
BODY_TIMEOUT = 15  # deploy/gunicorn.conf.py default


class SlowClient(threading.Thread):
    """Headers at once, then one byte of the body a second, until the server answers or closes."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.answer = b""
        self.closed_after: float | None = None
        self.bytes_sent = 0

    def run(self) -> None:
        head = (f"POST /infobip/dlr?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        self.sock.sendall(head.encode())
        self.sock.settimeout(1.0)
        for _ in range(120):  # at most two minutes
            try:
                self.sock.sendall(b" ")
                self.bytes_sent += 1
            except OSError:
                break
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            self.answer += data
            if not data:
                break
        self.closed_after = time.monotonic() - started
        self.sock.close()


def post_report(port: int, message_id: str) -> int:
    body = orjson.dumps(push(report(message_id)))
    return request(port, "POST", f"/infobip/dlr?token={TOKEN}", body, {"Content-Type": "application/json"})[0]


def test_a_slow_drip_body_is_cut_off_without_affecting_other_requests(stack):
    slow = [SlowClient(stack.port) for _ in range(SLOW_CLIENTS)]
    for client in slow:
        client.start()
    served: list[int] = []
    for n in range(200):  # normal requests while the slow ones drip, every 0.5 s
        served.append(post_report(stack.port, f"normal-{n}"))
        if all(not c.is_alive() for c in slow):
            break
        time.sleep(0.5)
    for client in slow:
        client.join(10)
    assert set(served) == {200}, "normal requests were served all along"
    for client in slow:
        assert client.closed_after is not None, "the server closed the slow connection"
        assert client.answer.startswith(b"HTTP/1.1 408"), client.answer[:200]
        assert client.bytes_sent < 1000  # cut off before its body was complete
    reasons = [orjson.loads(e)["reason"] for e in stack.r.lrange(QUARANTINE, 0, -1)]
    assert reasons.count("body not received in time") == SLOW_CLIENTS
    report_figures("slow_drip", {
        "slowClients": SLOW_CLIENTS,
        "bodyTimeoutSeconds": BODY_TIMEOUT,
        "secondsUntilCutOff": sorted(round(c.closed_after, 1) for c in slow),
        "normalRequestsMeanwhile": len(served),
        "normalRequestsAnswered200": served.count(200),
    })
    assert_no_secret_in_logs(stack)


RAW_REQUESTS = {
    "non-ASCII query bytes": b"GET /infobip/mo?token=%s&sender=1&text=caf\xe9 HTTP/1.1\r\nHost: h\r\n\r\n",
    "non-UTF-8 path": b"GET /infobip/mo/\xff\xfe?token=%s&sender=1&text=x HTTP/1.1\r\nHost: h\r\n\r\n",
    "CRLF header injection": b"GET /infobip/mo?token=%s&sender=1&text=x HTTP/1.1\r\nHost: h\r\n"
                             b"X-Note: a\r\nSet-Cookie: stolen=1\r\n\r\n",
    "bare CR in a header": b"GET /infobip/mo?token=%s&sender=1&text=x HTTP/1.1\r\nHost: h\r\n"
                           b"X-Note: a\rb\r\n\r\n",
    "NUL in a header": b"GET /infobip/mo?token=%s&sender=1&text=x HTTP/1.1\r\nHost: h\r\n"
                       b"X-Note: a\x00b\r\n\r\n",
    "Content-Length and Transfer-Encoding": b"POST /infobip/dlr?token=%s HTTP/1.1\r\nHost: h\r\n"
                                            b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                                            b"0\r\n\r\n",
    "two Content-Lengths": b"POST /infobip/dlr?token=%s HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n"
                           b"Content-Length: 30\r\n\r\n{}",
    "huge header": b"GET /infobip/mo?token=%s&sender=1&text=x HTTP/1.1\r\nHost: h\r\nX-Big: "
                   + b"a" * 20000 + b"\r\n\r\n",
    "CRLF in the request target": b"GET /infobip/mo?token=%s&text=x%0d%0aSet-Cookie:%20a=1&sender=1 HTTP/1.1"
                                  b"\r\nHost: h\r\n\r\n",
}


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        for _ in range(100):
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer and b"Connection: close" not in answer and len(answer) > 200:
                break
        return answer


def test_raw_hostile_requests_never_get_a_5xx_or_an_injected_header(stack):
    statuses = {}
    for name, template in RAW_REQUESTS.items():
        answer = raw_exchange(stack.port, template.replace(b"%s", TOKEN.encode()) if b"%s" in template
                              else template)
        if not answer:  # the server may just close such a connection
            statuses[name] = "closed"
            continue
        status_line, _, rest = answer.partition(b"\r\n")
        status = int(status_line.split()[1])
        statuses[name] = status
        assert status < 500, (name, answer[:300])
        head = rest.split(b"\r\n\r\n", 1)[0].lower()
        assert b"set-cookie" not in head and b"location" not in head, (name, head)
    assert post_report(stack.port, "after-raw") == 200
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)  # keep-alive still works
    for n in range(3):
        conn.request("POST", f"/infobip/dlr?token={TOKEN}", orjson.dumps(push(report(f"keepalive-{n}"))),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200 and not resp.will_close
    conn.close()
    wait_for(lambda: stack.procs["web"].alive(), 5, "gunicorn to be up")
    report_figures("raw_requests", statuses)
    assert_no_secret_in_logs(stack)
