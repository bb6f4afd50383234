"""The `smpp` process (Procfile; `python -m app.smpp`): hold Infobip's receiver binds.

`SMPP_SESSIONS` threads, each one session: connect (TLS with SMPP_TLS), bind as receiver or
transceiver, read and acknowledge (app/smpp/session.py), and on any failure reconnect with
exponential backoff and jitter, alternating between SMPP_HOST and SMPP_SECONDARY_HOST. SIGTERM
(or Ctrl-C) stops reading, unbinds each session cleanly and exits; what was read but not yet
acknowledged is simply delivered again by Infobip. Without SMPP_HOST there is nothing to do.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import ssl
import sys
import threading
import time
from typing import Any

from redis import Redis
from smpplib import exceptions as smpp_errors

from app import config, logs
from app.connection import make_client
from app.errors import ConfigError
from app.smpp import codec, status
from app.smpp.session import LinkLost, Receiver, Session

log = logging.getLogger("app.smpp")
TICK = 5.0  # seconds between two bind-state refreshes


def settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """Check the SMPP block of the configuration; derive the port."""
    if cfg["SMPP_BIND"] not in ("receiver", "transceiver"):
        raise ConfigError("SMPP_BIND must be receiver or transceiver (a transmitter gets no reports)")
    if not (cfg["SMPP_SYSTEM_ID"] and cfg["SMPP_PASSWORD"]):
        raise ConfigError("set SMPP_SYSTEM_ID and SMPP_PASSWORD (from your Infobip account)")
    # SMPP 3.4 field sizes, NUL included: smpplib would cut a longer value, and the bind fail.
    for name, longest in (("SMPP_SYSTEM_ID", 15), ("SMPP_PASSWORD", 8), ("SMPP_SYSTEM_TYPE", 12)):
        if len(cfg[name]) > longest:
            raise ConfigError(f"{name} is longer than SMPP 3.4 allows ({longest} characters)")
    if cfg["SMPP_SESSIONS"] < 1:
        raise ConfigError("SMPP_SESSIONS must be at least 1")
    return {**cfg, "SMPP_PORT": cfg["SMPP_PORT"] or (8887 if cfg["SMPP_TLS"] else 8888)}


def tls_context(cfg: dict[str, Any]) -> ssl.SSLContext | None:
    if not cfg["SMPP_TLS"]:
        return None
    return ssl.create_default_context(cafile=cfg["SMPP_TLS_CA"])


def backoff(attempt: int, cap: float) -> float:
    """1, 2, 4, ... seconds up to `cap`, with jitter so that sessions do not reconnect in step."""
    return min(cap, 2.0 ** attempt) * random.uniform(0.5, 1.0)


class Runner:
    def __init__(self, cfg: dict[str, Any], r: Redis) -> None:
        self.cfg = cfg
        self.r = r
        self.stop = threading.Event()
        self.hosts = [h for h in (cfg["SMPP_HOST"], cfg["SMPP_SECONDARY_HOST"]) if h]

    def run_session(self, index: int) -> None:
        attempt = 0
        while not self.stop.is_set():
            host = self.hosts[attempt % len(self.hosts)]  # fail over on every other try
            state = {"state": "connecting", "host": host, "port": self.cfg["SMPP_PORT"],
                     "bind": self.cfg["SMPP_BIND"], "since": time.time()}
            status.write(self.r, index, state)
            session = Session(host, self.cfg["SMPP_PORT"], tls_context(self.cfg))
            try:
                self.bind(session)
                attempt = 0
                log.info("smpp session %s bound to %s", index, host)
                self.serve(index, session, {**state, "state": "bound", "since": time.time()})
            except Exception as err:  # a session must never end its thread: log, back off, retry
                expected = (LinkLost, smpp_errors.ConnectionError, smpp_errors.PDUError, OSError)
                (log.warning if isinstance(err, expected) else log.exception)(
                    "smpp session %s on %s: %s", index, host, err)
                status.write(self.r, index, {**state, "state": "down", "error": str(err)[:200],
                                             "since": time.time()})
                attempt += 1
            finally:
                close(session)
            if not self.stop.is_set():
                self.stop.wait(backoff(attempt, self.cfg["SMPP_RECONNECT_MAX"]))
        status.write(self.r, index, {"state": "down", "error": "stopped", "since": time.time()})

    def bind(self, session: Session) -> None:
        session.connect()
        method = session.bind_receiver if self.cfg["SMPP_BIND"] == "receiver" else session.bind_transceiver
        method(system_id=self.cfg["SMPP_SYSTEM_ID"], password=self.cfg["SMPP_PASSWORD"],
               system_type=self.cfg["SMPP_SYSTEM_TYPE"])

    def serve(self, index: int, session: Session, state: dict[str, Any]) -> None:
        def stopping() -> bool:
            stats = session.stats
            status.write_every(self.r, index, TICK, {**state, "received": stats.received,
                                                      "acknowledged": stats.acknowledged,
                                                      "rejected": stats.rejected, "refused": stats.refused})
            return self.stop.is_set()

        Receiver(session, self.r, self.cfg, self.cfg["SMPP_KEEPALIVE"], stopping).run()
        unbind(session)


def unbind(session: Session) -> None:
    """Say goodbye; what arrives meanwhile is not acknowledged, so Infobip delivers it again."""
    try:
        session.send_raw(codec.make("unbind", session.next_sequence()).generate())
        for _ in range(100):  # bounded: deliver_sm may still be on the way before unbind_resp
            if not session.waiting(2.0):
                return
            if session.read_raw()[4:8] == (0x80000006).to_bytes(4, "big"):
                return
    except (LinkLost, OSError, smpp_errors.ConnectionError):
        return


def close(session: Session) -> None:
    with contextlib.suppress(OSError):
        session.disconnect()


def main() -> int:
    cfg = config.load()
    if not cfg["SMPP_HOST"]:
        print("SMPP_HOST is not set: no SMPP binds to hold", file=sys.stderr)
        return 0
    try:
        cfg = settings(cfg)
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    logs.configure()
    runner = Runner(cfg, make_client(cfg))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: runner.stop.set())
    threads = [threading.Thread(target=runner.run_session, args=(n,), name=f"smpp-{n}", daemon=True)
               for n in range(cfg["SMPP_SESSIONS"])]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
