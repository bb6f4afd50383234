"""The fake Infobip's SMPP 3.4 port: a real SMSC for tests and demos (SPEC §13).

    python -m tools.fake_infobip.smpp --port 8888 --system-id X --password Y [--control-port N]

It behaves as the seed says Infobip does: accepts bind_receiver / bind_transceiver (and
bind_transmitter, which gets nothing) with the right system_id and password, answers
enquire_link, and sends `deliver_sm` (reports, inbound SMS, number checks) spread evenly over
every bound session that can receive them, several outstanding per session (a window). A
deliver_sm answered with status 0 is done; one answered otherwise, or still unanswered when its
connection closes, is sent again later (after a reconnect, on any session), as Infobip does.

A small HTTP control port (no auth, 127.0.0.1) drives it from tests:
  POST /deliver {"pdus": [spec, ...]}   queue deliver_sm (see `encode` for a spec)
  POST /drop                            close every connection now (mid-stream)
  GET  /state                           binds, queued, outstanding, acknowledged keys, statuses
  POST /reset                           forget everything queued and acknowledged
`SmppControl` is the Python client of that port.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import socket
import ssl
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app.smpp import codec

BIND_COMMANDS = {0x00000001: "receiver", 0x00000002: "transmitter", 0x00000009: "transceiver"}
ESME_RINVPASWD, ESME_RINVSYSID, ESME_RINVCMDID = 0x0E, 0x0F, 0x03
PERMANENT = (0x65, 0x66)  # ESME_RX_P_APPN, ESME_RX_R_APPN: the ESME refuses it for good


@dataclass
class Pending:
    key: str
    raw: bytes  # the PDU with sequence number 0; each send stamps its own
    due: float = 0.0
    sends: int = 0


@dataclass
class Conn:
    sock: socket.socket
    bind: str | None = None
    system_type: str = ""
    outstanding: dict[int, Pending] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)


def encode(spec: dict[str, Any]) -> bytes:
    """A deliver_sm from a spec: {"raw": hex} as it is, or {"source_addr", "destination_addr",
    "short_message" (text) or "short_message_hex", "esm_class", "data_coding", "tlvs": {name:
    int | str | {"hex": ...}}}; vendor TLVs (ib_*) given as int go as 4 octets."""
    if "raw" in spec:
        return bytes.fromhex(spec["raw"])
    message = (bytes.fromhex(spec["short_message_hex"]) if "short_message_hex" in spec
               else spec.get("short_message", "").encode("latin-1"))
    tlvs: dict[str, Any] = {}
    for name, value in (spec.get("tlvs") or {}).items():
        if isinstance(value, dict):
            value = bytes.fromhex(value["hex"])
        elif name.startswith("ib_"):
            value = value.to_bytes(4, "big") if isinstance(value, int) else value.encode("utf-8")
        tlvs[name] = value
    return codec.deliver_sm(0, spec.get("source_addr", ""), spec.get("destination_addr", ""), message,
                            spec.get("esm_class", 0), spec.get("data_coding", 0), **tlvs)


def receipt(message_id: str, stat: str = "DELIVRD", err: str = "000", done: str = "2612071000",
            to: str = "41793026727", sender: str = "InfoSMS", **extra: Any) -> dict[str, Any]:
    """The spec of a delivery receipt as Infobip sends it (seed "ФОРМАТ ОТЧЕТА О ДОСТАВКЕ")."""
    text = (f"id:{message_id} sub:001 dlvrd:001 submit date:{done} done date:{done} "
            f"stat:{stat} err:{err} text:")
    return {"key": message_id, "source_addr": to, "destination_addr": sender, "esm_class": 0x04,
            "short_message": text, "tlvs": {"receipted_message_id": message_id}, **extra}


class FakeSmsc:
    def __init__(self, system_id: str, password: str, port: int = 0, window: int = 100,
                 retry_delay: float = 0.5, tls: ssl.SSLContext | None = None) -> None:
        self.system_id, self.password = system_id, password
        self.window, self.retry_delay, self.tls = window, retry_delay, tls
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self.queue: deque[Pending] = deque()
        self.conns: list[Conn] = []
        self.acked: Counter[str] = Counter()  # key -> deliver_sm_resp with status 0
        self.refused: Counter[str] = Counter()  # key -> answered with a permanent error
        self.statuses: Counter[int] = Counter()
        self.binds: Counter[str] = Counter()
        self.refused_binds = 0
        self.enquire_links = 0
        self.unbinds = 0
        self.sent = 0  # deliver_sm written, resends included
        self.cond = threading.Condition()
        self.sequence = itertools.count(1)
        self.running = True
        self.threads = [threading.Thread(target=self._accept, daemon=True),
                        threading.Thread(target=self._dispatch, daemon=True)]

    def start(self) -> FakeSmsc:
        for thread in self.threads:
            thread.start()
        return self

    def close(self) -> None:
        self.running = False
        self.listener.close()
        self.drop()
        with self.cond:
            self.cond.notify_all()

    # --- control ------------------------------------------------------------------------------

    def deliver(self, specs: list[dict[str, Any]]) -> int:
        with self.cond:
            for spec in specs:
                self.queue.append(Pending(spec.get("key") or "", encode(spec)))
            self.cond.notify_all()
        return len(specs)

    def drop(self) -> int:
        with self.cond:
            conns = list(self.conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        return len(conns)

    def state(self) -> dict[str, Any]:
        with self.cond:
            bound = [c for c in self.conns if c.bind in ("receiver", "transceiver")]
            return {
                "bound": len(bound), "binds": dict(self.binds), "refusedBinds": self.refused_binds,
                "queued": len(self.queue), "outstanding": sum(len(c.outstanding) for c in self.conns),
                "acked": sorted(self.acked), "ackCopies": sum(self.acked.values()),
                "refused": sorted(self.refused),
                "statuses": {str(k): v for k, v in self.statuses.items()},
                "enquireLinks": self.enquire_links, "unbinds": self.unbinds, "sent": self.sent,
            }

    def reset(self) -> None:
        with self.cond:
            self.queue.clear()
            self.acked.clear()
            self.refused.clear()
            self.statuses.clear()

    # --- sessions -----------------------------------------------------------------------------

    def _accept(self) -> None:
        while self.running:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (OSError, ssl.SSLError):
                    sock.close()
                    continue
            conn = Conn(sock)
            with self.cond:
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Conn) -> None:
        try:
            while self.running:
                raw = _read_pdu(conn.sock)
                if raw is None or not self._handle(conn, raw):
                    break
        except OSError:
            pass
        finally:
            self._forget(conn)

    def _forget(self, conn: Conn) -> None:
        """A closed connection: what it had outstanding is sent again, first."""
        with self.cond:
            conn.closed = True
            if conn in self.conns:
                self.conns.remove(conn)
            for item in sorted(conn.outstanding.values(), key=lambda p: p.sends, reverse=True):
                self.queue.appendleft(item)
            conn.outstanding.clear()
            self.cond.notify_all()
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _handle(self, conn: Conn, raw: bytes) -> bool:
        _length, command_id, status, sequence = codec.header(raw)
        if command_id in BIND_COMMANDS:
            pdu = codec.parse(raw)
            ok_id = pdu.system_id.decode() == self.system_id
            ok_password = pdu.password.decode() == self.password
            code = 0 if ok_id and ok_password else (ESME_RINVSYSID if not ok_id else ESME_RINVPASWD)
            name = BIND_COMMANDS[command_id]
            resp = codec.make(f"bind_{name}_resp", sequence, status=code, system_id="InfobipFake")
            conn.send(resp.generate())
            with self.cond:
                if code:
                    self.refused_binds += 1
                    return False
                conn.bind, conn.system_type = name, pdu.system_type.decode()
                self.binds[name] += 1
                self.cond.notify_all()
            return True
        if command_id == 0x00000015:  # enquire_link
            self.enquire_links += 1
            conn.send(codec.make("enquire_link_resp", sequence).generate())
            return True
        if command_id == 0x00000006:  # unbind
            self.unbinds += 1
            conn.send(codec.make("unbind_resp", sequence).generate())
            return False
        if command_id == 0x80000005:  # deliver_sm_resp
            with self.cond:
                item = conn.outstanding.pop(sequence, None)
                self.statuses[status] += 1
                if item is not None:
                    if status == 0:
                        self.acked[item.key] += 1
                    elif status in PERMANENT:
                        self.refused[item.key] += 1
                    else:  # Infobip tries again later
                        item.due = time.monotonic() + self.retry_delay
                        self.queue.append(item)
                self.cond.notify_all()
            return True
        if command_id & 0x80000000:
            return True  # enquire_link_resp, generic_nack
        conn.send(codec.make("generic_nack", sequence, status=ESME_RINVCMDID).generate())
        return True

    def _dispatch(self) -> None:
        """Send queued PDUs round-robin over bound receivers, within each one's window."""
        turn = 0
        while self.running:
            with self.cond:
                receivers = [c for c in self.conns if c.bind in ("receiver", "transceiver") and not c.closed]
                free = [c for c in receivers if len(c.outstanding) < self.window]
                now = time.monotonic()
                item = self.queue[0] if self.queue else None
                if item is None or not free or item.due > now:
                    if item is not None and item.due > now and free:
                        self.queue.rotate(-1)  # something else may be due
                    self.cond.wait(0.05)
                    continue
                self.queue.popleft()
                conn = free[turn % len(free)]
                turn += 1
                sequence = next(self.sequence)
                item.sends += 1
                self.sent += 1
                conn.outstanding[sequence] = item
            data = item.raw[:12] + sequence.to_bytes(4, "big") + item.raw[16:]
            # On a closed socket the reader requeues what was outstanding.
            with contextlib.suppress(OSError):
                conn.send(data)


def _read_exact(sock: socket.socket, size: int) -> bytes | None:
    parts, got = [], 0
    while got < size:
        part = sock.recv(size - got)
        if not part:
            return None
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _read_pdu(sock: socket.socket) -> bytes | None:
    head = _read_exact(sock, 4)
    if head is None:
        return None
    length = int.from_bytes(head, "big")
    if not 16 <= length <= codec.MAX_PDU:
        return None
    rest = _read_exact(sock, length - 4)
    return None if rest is None else head + rest


# --- the control port ---------------------------------------------------------------------------


def control_server(smsc: FakeSmsc, port: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

        def _answer(self, body: Any, status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/state":
                self._answer(smsc.state())
            else:
                self._answer({"error": "not found"}, 404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path == "/deliver":
                self._answer({"queued": smsc.deliver(body.get("pdus") or [])})
            elif self.path == "/drop":
                self._answer({"dropped": smsc.drop()})
            elif self.path == "/reset":
                smsc.reset()
                self._answer({"reset": True})
            else:
                self._answer({"error": "not found"}, 404)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class SmppControl:
    """The tests' client of the control port."""

    def __init__(self, port: int) -> None:
        self.port = port

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers={"Content-Type": "application/json"})
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def deliver(self, specs: list[dict[str, Any]]) -> int:
        return self._call("POST", "/deliver", {"pdus": specs})["queued"]

    def drop(self) -> int:
        return self._call("POST", "/drop", {})["dropped"]

    def state(self) -> dict[str, Any]:
        return self._call("GET", "/state")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--control-port", type=int, default=0, help="HTTP control port (0: port + 1)")
    parser.add_argument("--system-id", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--tls-cert", help="PEM certificate and key: serve SMPP over TLS")
    args = parser.parse_args()
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert)
    smsc = FakeSmsc(args.system_id, args.password, args.port, args.window, tls=tls).start()
    control = control_server(smsc, args.control_port or args.port + 1)
    print(f"fake Infobip SMPP on 127.0.0.1:{smsc.port}, control on 127.0.0.1:{control.server_port}",
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        smsc.close()


if __name__ == "__main__":
    main()
