"""Fixtures of the fault tests: a fresh stack of real processes per test (tests/faults/harness.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.consumers import ConsumerServer
from tests.faults.harness import LoadClient, Stack

# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def consumer() -> Iterator[ConsumerServer]:
    server = ConsumerServer().start()
    yield server
    server.close()


@pytest.fixture
def stack(tmp_path: Path, consumer: ConsumerServer, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A module's `STACK` class when it has one (e.g. the Sentinel topology's), else `Stack`."""
    running = getattr(request.module, "STACK", Stack)(tmp_path, consumer)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def load(stack: Stack, request: pytest.FixtureRequest) -> Iterator[Callable[..., LoadClient]]:
    """`load(rate=..., size=...)` starts a LoadClient; it is halted at the end of the test."""
    started: list[LoadClient] = []

    def make(**kw: Any) -> LoadClient:
        client = LoadClient(stack.port, f"{request.node.name[:40]}-{len(started)}", **kw).start()
        started.append(client)
        return client

    yield make
    for client in started:
        client.halt()
