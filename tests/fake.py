"""The `fake_infobip` fixture: the fake Infobip (tools/fake_infobip) as a real process.

One process per test session (started by the first test that asks, stopped when pytest exits),
on a free port of 127.0.0.1, in its own session so that tests which SIGKILL process groups of
workers never reach it; if it died all the same, the next test starts a new one. Each test
gets it reset (nothing sent, nothing queued, no faults, clock at now) with short report and
push-retry delays:

    def test_pull(fake_infobip):
        fake_infobip.control.add_reports(count=3)
        client = InfobipClient(fake_infobip.url, api_key=fake_infobip.api_key)
        fake_infobip.config()   # INFOBIP_* settings for create_app / from_config
"""

from __future__ import annotations

import atexit
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tools.fake_infobip.control import FakeControl

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "ib-key-3c9f1e7a5d2b48f0"
USERNAME, PASSWORD = "ib-user", "ib-pass-8e4d2a6c1f"
NOTIFY_DELAY = 0.05  # seconds from a send to its report
RETRY_SCALE = 0.005  # Infobip's push retries 1 min, 2 min, 5 min... -> 0.3 s, 0.6 s, 1.5 s...
START_TIMEOUT = 20.0


class FakeProcess:
    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> FakeProcess:
        args = [sys.executable, "-m", "tools.fake_infobip", "--port", "0", "--api-key", API_KEY,
                "--username", USERNAME, "--password", PASSWORD,
                "--notify-delay", str(NOTIFY_DELAY), "--retry-scale", str(RETRY_SCALE)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=log,
                                            start_new_session=True)
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        line = b""
        while b"listening on " not in line:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(remaining, 0))
            if not ready or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"the fake Infobip did not start; see {self.log_path}")
            line = self.process.stdout.readline()
        self.url = line.decode().split("listening on ", 1)[1].strip()
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.process.stdout:
            self.process.stdout.close()


@dataclass
class FakeInfobip:
    url: str
    control: FakeControl
    api_key: str = API_KEY
    username: str = USERNAME
    password: str = PASSWORD

    def config(self, scheme: str = "App", timeout: float = 2.0) -> dict[str, Any]:
        """INFOBIP_* settings pointing at the fake, with the key (App) or Basic credentials."""
        return {"INFOBIP_BASE_URL": self.url, "INFOBIP_TIMEOUT": timeout,
                "INFOBIP_API_KEY": self.api_key if scheme == "App" else None,
                "INFOBIP_USERNAME": self.username if scheme == "Basic" else None,
                "INFOBIP_PASSWORD": self.password if scheme == "Basic" else None}


_process: FakeProcess | None = None  # one per test session, shared by every test


@pytest.fixture
def fake_infobip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeInfobip]:
    """A process rather than a session fixture of its own, so conftest imports one name."""
    global _process
    if _process is None or not _process.alive():
        if _process is not None:
            _process.stop()
        _process = FakeProcess(tmp_path_factory.mktemp("fake-infobip") / "fake.log").start()
        atexit.register(_process.stop)
    control = FakeControl(_process.url)
    control.reset()
    control.settings(notify_delay=NOTIFY_DELAY, retry_scale=RETRY_SCALE)
    yield FakeInfobip(_process.url, control)
    control.release()  # no request stays held after its test
