"""The smpp process under faults (SPEC §13), real processes: the Procfile's `smpp` against the
fake Infobip SMSC (`python -m tools.fake_infobip.smpp`), beside the usual stack.

The SMSC resends every deliver_sm that was not answered with status 0 (unanswered when its
connection closed, or answered ESME_RSYSERR), as Infobip does. Each test shows: every report the
SMSC saw acknowledged is in state and reached the consumer as exactly one event.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from tests.faults.harness import Proc, Stack, delivered, procfile, report_figures, wait_for
from tools.fake_infobip.smpp import SmppControl, receipt
from tools.redis_server import free_port

pytestmark = pytest.mark.faults

SYSTEM_ID, PASSWORD = "acme-smpp", "pw-4f2a9"
REPORTS = 3000


class Rig:
    """The fake SMSC and the smpp process, added to the stack's supervised processes."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        port, control = free_port(), free_port()
        env = {**stack.env(), "SMPP_HOST": "127.0.0.1", "SMPP_PORT": str(port), "SMPP_SYSTEM_ID": SYSTEM_ID,
               "SMPP_PASSWORD": PASSWORD, "SMPP_SESSIONS": "2", "SMPP_RECONNECT_MAX": "2",
               "LOG_LEVEL": "DEBUG"}  # smpplib logs PDUs in hex at DEBUG: the password must not show
        smpp = procfile(stack.redis_server.url)["smpp"]  # [the venv's python, "-m", "app.smpp"]
        fake = [smpp[0], "-m", "tools.fake_infobip.smpp", "--port", str(port), "--control-port", str(control),
                "--system-id", SYSTEM_ID, "--password", PASSWORD]
        self.fake = Proc("fake-smsc", fake, {**env}, stack.tmp / "fake-smsc.log").start()
        self.control = SmppControl(control)
        try:
            wait_for(self._answers, 20, "the fake SMSC's control port")
            stack.procs["smpp"] = Proc("smpp", smpp, env, stack.tmp / "smpp.log").start()
            wait_for(lambda: self.control.state()["bound"] == 2, 30, "two receiver binds")
        except BaseException:
            self.fake.stop()  # the stack stops the smpp process; the fake is ours
            raise

    def _answers(self) -> bool:
        try:
            self.control.state()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        self.fake.stop()

    def all_acked(self, ids: list[str], timeout: float = 90) -> dict:
        wait_for(lambda: set(ids) <= set(self.control.state()["acked"]), timeout, "every report acknowledged")
        return self.control.state()


@pytest.fixture
def rig(stack: Stack) -> Iterator[Rig]:
    running = Rig(stack)
    yield running
    stack.held.add("smpp")
    running.stop()


def assert_acked_persisted_delivered(stack: Stack, consumer, ids: list[str], state: dict) -> dict:
    acked = set(state["acked"])
    assert acked == set(ids), "the SMSC saw every report acknowledged in the end"
    wait_for(lambda: len(stack.persisted(ids)) == len(ids), 90, "every acknowledged report in state")
    wait_for(lambda: set(delivered(consumer)) >= set(ids), 90, "every report delivered")
    got = {m: c for m, c in delivered(consumer).items() if m in acked}
    assert all(len(event_ids) == 1 for event_ids in got.values()), "one event id per report"
    figures = {"reports": len(ids), "acknowledged": len(acked), "persisted": len(stack.persisted(ids)),
               "deliveredDistinctEventIds": len(got), "deliverSmSent": state["sent"],
               "answers": state["statuses"], "binds": state["binds"],
               "processRestarts": [name for _, name, _ in stack.restarts]}
    assert figures["acknowledged"] == figures["persisted"] == figures["deliveredDistinctEventIds"]
    return figures


def send(rig: Rig, prefix: str) -> list[str]:
    ids = [f"{prefix}-{n:05d}" for n in range(REPORTS)]
    for start in range(0, REPORTS, 500):
        rig.control.deliver([receipt(m, done="2612071000") for m in ids[start:start + 500]])
    return ids


def test_smpp_process_sigkilled_with_reports_in_flight(stack, rig, consumer):
    ids = send(rig, "kill")
    wait_for(lambda: len(rig.control.state()["acked"]) >= 300, 60, "reports flowing")
    stack.procs["smpp"].kill()  # SIGKILL: whatever it had read but not answered is lost to it
    killed_at = time.monotonic()
    wait_for(lambda: stack.procs["smpp"].starts >= 2, 30, "the supervisor to restart smpp")
    state = rig.all_acked(ids)
    figures = assert_acked_persisted_delivered(stack, consumer, ids, state)
    figures["secondsToAllAcked"] = round(time.monotonic() - killed_at, 1)
    assert state["sent"] >= REPORTS
    log = (stack.tmp / "smpp.log").read_text()
    assert "bound to 127.0.0.1" in log
    assert PASSWORD not in log and PASSWORD.encode().hex() not in log, "the SMPP password in the log"
    report_figures("smpp_sigkill", figures)


def test_connection_dropped_mid_stream(stack, rig, consumer):
    ids = send(rig, "drop")
    drops = 0
    for threshold in (500, 1200, 2000):
        wait_for(lambda t=threshold: len(rig.control.state()["acked"]) >= t, 60, f"{threshold} acknowledged")
        drops += rig.control.drop()
    state = rig.all_acked(ids)
    figures = assert_acked_persisted_delivered(stack, consumer, ids, state)
    assert drops >= 3 and state["binds"]["receiver"] >= 4, "the sessions were dropped and bound again"
    figures["connectionsDropped"] = drops
    report_figures("smpp_drop", figures)


def test_redis_down_for_a_while(stack, rig, consumer):
    ids = send(rig, "redis")
    wait_for(lambda: len(rig.control.state()["acked"]) >= 300, 60, "reports flowing")
    stack.redis_server.process.kill()
    stack.redis_server.process.wait(10)
    wait_for(lambda: rig.control.state()["statuses"].get("8", 0) > 0, 30, "ESME_RSYSERR while Redis is down")
    time.sleep(4)
    stack.redis_server.start()
    wait_for(lambda: stack.live_workers() >= 3, 90, "the workers to be back")
    state = rig.all_acked(ids, timeout=120)
    figures = assert_acked_persisted_delivered(stack, consumer, ids, state)
    assert state["statuses"].get("8", 0) > 0
    report_figures("smpp_redis_down", figures)




def test_sigterm_unbinds_every_session_and_exits(stack, rig):
    stack.held.add("smpp")  # the supervisor must not start it again
    proc = stack.procs["smpp"]
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(20) == 0
    assert rig.control.state()["unbinds"] == 2, "one unbind per session"
