"""One bounded wait, for the bench and the fault tests, which wait on servers they started.
Bounded in time and in count, as the project's rule asks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> float:
    """Poll until `predicate()` is truthy; return the seconds it took. TimeoutError after
    `timeout` seconds, naming `what` was awaited."""
    started = time.monotonic()
    for _ in range(int(timeout / interval) + 2):
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            break
        time.sleep(interval)
    raise TimeoutError(f"gave up after {timeout:g}s waiting for {what}")
