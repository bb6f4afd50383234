"""The HTTP consumer of the fan-out and scale runs: a small asyncio HTTP/1.1 keep-alive server.

`python -m bench.consumer --port P --ids-dir D` answers every POST with 204 and appends the
request's `webhook-id` (the event id) to D/ids-<pid>.txt, one line each, with one write(2) per
request, so the bench counts distinct event ids and duplicates at the consumer while it runs.

Why not gunicorn + Flask: the consumer must not be what limits the fan-out and scale runs; this
one costs a few tens of microseconds a request, so both the bare POST loop and
`workers.deliver` are measured against the same fast peer (docs/BENCHMARKS.md).
Bound to 127.0.0.1 only; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

MAX_HEADER = 64 * 1024
ANSWER = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Recorder:
    def __init__(self, ids_dir: Path | None) -> None:
        self.fd = None
        if ids_dir is not None:
            path = ids_dir / f"ids-{os.getpid()}.txt"
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def record(self, event_id: bytes) -> None:
        if self.fd is not None and event_id:
            os.write(self.fd, event_id + b"\n")


def header(head: bytes, name: bytes) -> bytes:
    """The value of one header (name lower-case) in a raw request head, or b""."""
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return b""


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           recorder: Recorder) -> None:
    try:
        for _ in range(10_000_000):  # bounded: one iteration per request on this connection
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            length = header(head, b"content-length") or b"0"
            if not length.isdigit():
                writer.write(BAD)
                return
            await reader.readexactly(int(length))
            recorder.record(header(head, b"webhook-id"))
            writer.write(ANSWER)
            if header(head, b"connection").lower() == b"close":
                return
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        return  # the peer went away, or we are stopping: nothing to answer
    finally:
        writer.close()


async def main_async(port: int, ids_dir: Path | None) -> None:
    recorder = Recorder(ids_dir)
    server = await asyncio.start_server(lambda r, w: serve_connection(r, w, recorder), "127.0.0.1", port,
                                        limit=MAX_HEADER)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.consumer")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ids-dir", type=Path)
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.port, args.ids_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
