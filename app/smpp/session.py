"""One SMPP session: bind, read deliver_sm in batches, hand them off, then acknowledge.

The acknowledgement is the SMPP twin of the HTTP 200 (SPEC §13): a `deliver_sm_resp` with
status 0 goes out only after `app.handoff.accept` returned, i.e. after Redis wrote the item.
Reading one PDU and writing it to Redis before reading the next would cap a session at one
Redis round trip per report; Infobip keeps many deliver_sm outstanding (SMPP windowing), so
the session reads every PDU already waiting (up to `BATCH`), hands them off in one `accept`
per kind, and then sends their responses:

- handed off: ESME_ROK;
- rejected by validation (quarantined by `accept`), or not even readable (quarantined here):
  ESME_RX_P_APPN, "permanent error, do not resend"; the input is kept for `flask quarantine`;
- Redis could not take the write: ESME_RSYSERR, so Infobip delivers it again later.

The session never drops the connection for one bad PDU. It sends enquire_link when the link
was quiet for `keepalive` seconds (Infobip closes a session silent for 30 s) and gives up the
connection when no answer comes; the process (app/smpp/__main__.py) then reconnects.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis import Redis, RedisError
from smpplib import client as smpp_client
from smpplib import consts

from app import handoff, quarantine
from app.clock import now_text
from app.smpp import codec, pdu_map

log = logging.getLogger(__name__)

BATCH = 1000  # deliver_sm handed off in one go at most
# smpplib logs every PDU in hex at DEBUG, the bind's password included, and a warning for each
# closed bound socket: its loggers stay at ERROR whatever LOG_LEVEL says.
WIRE_LOGGER = "smpplib.session"
logging.getLogger("smpplib").setLevel(logging.ERROR)
ESME_ROK, ESME_RSYSERR, ESME_RX_P_APPN = 0x00, 0x08, 0x65
DELIVER_SM, ENQUIRE_LINK, UNBIND = 0x00000005, 0x00000015, 0x00000006
PATHS = {"dlr": "/infobip/dlr", "mo": "/infobip/mo", "number": "/smpp/number"}


class LinkLost(Exception):
    """The connection is gone or unusable: reconnect."""


@dataclass
class Stats:
    received: int = 0
    acknowledged: int = 0
    rejected: int = 0
    refused: int = 0  # answered ESME_RSYSERR (Redis down)
    last_pdu_at: float = field(default_factory=time.monotonic)


class Session(smpp_client.Client):
    """smpplib's client with PDUs read raw first: a PDU smpplib cannot parse is kept, not lost."""

    def __init__(self, host: str, port: int, ssl_context: Any = None, timeout: float = 10.0) -> None:
        super().__init__(host, port, timeout=timeout, ssl_context=ssl_context, allow_unknown_opt_params=True,
                         logger_name=WIRE_LOGGER)
        self.stats = Stats()

    def _create_socket(self) -> socket.socket:
        """As smpplib's, but TLS names the host: certificate checks need it (smpplib leaves it out)."""
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.settimeout(self.timeout)
        if self._ssl_context is None:
            return raw
        return self._ssl_context.wrap_socket(raw, server_hostname=self.host)

    def read_raw(self) -> bytes:
        raw_len = self._recv_exact(4)
        length = int.from_bytes(raw_len, "big")
        if not 16 <= length <= codec.MAX_PDU:
            raise LinkLost(f"PDU length {length}: the stream is out of step")
        return raw_len + self._recv_exact(length - 4)

    def waiting(self, timeout: float) -> bool:
        """A PDU (or part of one) can be read now or within `timeout` seconds."""
        sock = self._socket
        if sock is None:
            raise LinkLost("not connected")
        if hasattr(sock, "pending") and sock.pending():
            return True
        readable, _, _ = select.select([sock], [], [], timeout)
        return bool(readable)

    def send_raw(self, data: bytes) -> None:
        try:
            self._socket.sendall(data)
        except OSError as err:
            raise LinkLost(str(err)) from err


def respond(command: str, sequence: int, status: int = ESME_ROK) -> bytes:
    return codec.make(command, sequence, status=status).generate()


class Receiver:
    """Reads and acknowledges one bound session until it stops or the link is lost."""

    def __init__(self, session: Session, r: Redis, config: Mapping[str, Any], keepalive: float,
                 stopping: Callable[[], bool]) -> None:
        self.session = session
        self.r = r
        self.config = config
        self.keepalive = keepalive
        self.stopping = stopping
        self.enquired_at: float | None = None

    def run(self) -> None:
        while not self.stopping():
            self.keep_alive()
            if not self.session.waiting(0.5):
                continue
            raws = [self.read()]
            while len(raws) < BATCH and self.session.waiting(0):
                raws.append(self.read())
            self.handle(raws)

    def read(self) -> bytes:
        try:
            raw = self.session.read_raw()
        except (smpp_client.exceptions.ConnectionError, OSError) as err:
            raise LinkLost(f"read failed: {err!r}") from err
        self.session.stats.last_pdu_at = time.monotonic()
        self.enquired_at = None  # anything from the peer proves the link
        return raw

    def keep_alive(self) -> None:
        quiet = time.monotonic() - self.session.stats.last_pdu_at
        if self.enquired_at is not None and time.monotonic() - self.enquired_at > self.keepalive:
            raise LinkLost("no answer to enquire_link")
        if quiet > self.keepalive and self.enquired_at is None:
            self.session.send_raw(codec.make("enquire_link", self.session.next_sequence()).generate())
            self.enquired_at = time.monotonic()

    def handle(self, raws: list[bytes]) -> None:
        delivers, out, unbind = [], [], None
        for raw in raws:
            _length, command_id, _status, sequence = codec.header(raw)
            if command_id == DELIVER_SM:
                delivers.append(raw)
            elif command_id == ENQUIRE_LINK:
                out.append(respond("enquire_link_resp", sequence))
            elif command_id == UNBIND:
                unbind = sequence
            elif not command_id & 0x80000000:  # a request we do not serve
                out.append(respond("generic_nack", sequence, consts.SMPP_ESME_RINVCMDID))
        if delivers:
            out.extend(self.deliver(delivers))
        if unbind is not None:  # what came before the unbind is answered first
            out.append(respond("unbind_resp", unbind))
        if out:
            self.session.send_raw(b"".join(out))
        if unbind is not None:
            raise LinkLost("the SMSC unbound")

    def deliver(self, raws: list[bytes]) -> list[bytes]:
        """Hand off a batch of deliver_sm; return their responses, in order."""
        stats = self.session.stats
        stats.received += len(raws)
        statuses: dict[int, int] = {}
        by_kind: dict[str, list[tuple[int, Any]]] = {}
        day = now_text()[:10]
        for index, raw in enumerate(raws):
            try:
                kind, item = pdu_map.map_deliver_sm(codec.fields_of(codec.parse(raw)), day)
            except Exception as err:  # any PDU smpplib or the mapping cannot read
                statuses[index] = self.quarantine_pdu(raw, f"unreadable deliver_sm: {err!r}")
                continue
            # MO one by one: a quarantined forward replays through /infobip/mo on its own.
            group = f"mo:{index}" if kind == "mo" else kind
            by_kind.setdefault(group, []).append((index, item))
        for group, entries in by_kind.items():
            kind = group.split(":")[0]
            items = [item for _, item in entries]
            try:
                answer = handoff.accept(self.r, self.config, kind, items, source="smpp",
                                        body=_replay_body(kind, items), path=PATHS[kind])
            except RedisError as err:
                log.warning("smpp hand-off refused: %s", err.__class__.__name__)
                statuses.update({index: ESME_RSYSERR for index, _ in entries})
                continue
            except Exception:  # a bug must not turn a PDU into a poison resent for ever: keep it
                log.exception("smpp hand-off failed; the PDUs are quarantined")
                statuses.update({index: self.quarantine_pdu(raws[index], "hand-off failed")
                                 for index, _ in entries})
                continue
            rejected = {entry["index"] for entry in answer["rejected"]}
            for position, (index, _) in enumerate(entries):
                statuses[index] = ESME_RX_P_APPN if position in rejected else ESME_ROK
        stats.acknowledged += sum(1 for s in statuses.values() if s == ESME_ROK)
        stats.rejected += sum(1 for s in statuses.values() if s == ESME_RX_P_APPN)
        stats.refused += sum(1 for s in statuses.values() if s == ESME_RSYSERR)
        return [respond("deliver_sm_resp", codec.header(raw)[3], statuses[i])
                for i, raw in enumerate(raws)]

    def quarantine_pdu(self, raw: bytes, reason: str) -> int:
        entry = quarantine.record_input("smpp", "/smpp/deliver_sm", "application/octet-stream", reason,
                                        None, raw)
        try:
            quarantine.keep(self.r, entry, self.config["QUARANTINE_MAX"])
        except RedisError:
            return ESME_RSYSERR
        return ESME_RX_P_APPN


def _replay_body(kind: str, items: list[Any]) -> bytes:
    """What a quarantine replay posts: a push of the reports, the forward's parameters."""
    if kind == "mo":
        return orjson.dumps(items[0][1])
    if kind == "dlr":
        return orjson.dumps({"results": items})
    return orjson.dumps(items)
