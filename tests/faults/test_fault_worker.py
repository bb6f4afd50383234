"""An RQ worker SIGKILLed in the middle of a drain batch, under steady load (docs/RELIABILITY.md).

The kill takes the worker's whole process tree (main process, work-horse, scheduler), as a
lost host or the OOM killer would: SIGKILL to each pid, because RQ's work-horse is in a process
group of its own (setpgrp): a kill of the worker's group alone leaves the horse running to the
end of its job. It must land while the horse holds a claimed batch: the test builds a backlog
first (SIGSTOP of the worker's tree for a few seconds, the load going on), then kills
as soon as a `batch:*` key exists, and checks that the dead job's batch key is still there (it
was killed mid-batch; nobody else deletes that key). The supervisor restarts the worker.

Two mechanisms pick the abandoned work up, and both are measured:
- the sweep (`rq cron`, every 10 s) hands a batch back once its job's lane lock has lapsed
  (LOCK_TTL = 30 s): bound 40 s;
- RQ itself retries the dead job once its heartbeat TTL has passed and a worker's maintenance
  runs (--job-monitoring-interval 10, --maintenance-interval 15): bound ~85 s.
"""

from __future__ import annotations

import signal
import time

import orjson
import pytest
from rq.exceptions import NoSuchJobError
from rq.job import Job

from app.enqueue import LOCK_TTL
from tests.faults.harness import (
    assert_no_secret_in_logs,
    assert_nothing_lost,
    report_figures,
    wait_for,
)

pytestmark = pytest.mark.faults

SWEEP_INTERVAL = 10  # workers/cron.py
ATTEMPTS = 5  # tries at landing the kill inside a batch


def message_id(envelope: dict) -> str:
    """A batch item's messageId: a report the request checked waits as it came (`raw`)."""
    return (envelope.get("data") or envelope["raw"])["messageId"]


def kill_mid_batch(stack) -> tuple[str, list[str], float] | None:
    """Build a backlog, then SIGKILL the worker while it holds a batch. Returns the dead job's
    batch key, the messageIds in it and the time of the kill; None when the kill missed."""
    worker = stack.procs["worker"]
    worker.signal_tree(signal.SIGSTOP)
    time.sleep(3)  # ~600 reports wait in the lanes
    worker.signal_tree(signal.SIGCONT)
    for _ in range(5000):  # every 2 ms, at most 10 s
        if stack.r.keys("batch:*"):
            worker.kill_tree()
            killed_at = time.monotonic()
            # Commands the horse had sent before it died still land (an EXEC in flight commits
            # its batch). The one receiver worker is dead and not yet restarted: any batch key
            # left now is the dead job's, claimed and never to be applied by it.
            time.sleep(0.3)
            keys = stack.r.keys("batch:*")
            if not keys:
                return None
            assert len(keys) == 1, keys
            key = keys[0].decode()
            items = stack.r.lrange(key, 0, -1)
            return key, [message_id(orjson.loads(i)) for i in items], killed_at
        time.sleep(0.002)
    return None


def test_worker_sigkilled_mid_batch_loses_nothing(stack, load, consumer):
    client = load(rate=10, size=20, mo_every=5)
    wait_for(lambda: len(client.acked) >= 200, 30, "the load to be acknowledged")
    wait_for(lambda: consumer.requests("/crm"), 30, "first deliveries")
    attempts = 0
    for attempts in range(1, ATTEMPTS + 1):  # noqa: B007  (the count is reported)
        starts = stack.procs["worker"].starts
        killed = kill_mid_batch(stack)
        if killed:
            break
        wait_for(lambda s=starts: stack.procs["worker"].starts > s and stack.procs["worker"].alive(), 30,
                 "the supervisor to restart the worker")
        time.sleep(2)
    assert killed, f"no kill landed inside a batch in {ATTEMPTS} attempts"
    key, orphaned, killed_at = killed
    job_id = key.rsplit(":", 1)[1]
    lane = key.split(":")[1]
    assert stack.r.get(f"drain:{lane}") == job_id.encode(), "the dead job still holds its lane"
    acked_at_kill = sorted(client.acked)

    def since_kill() -> float:
        return round(time.monotonic() - killed_at, 1)

    # The sweep: the batch goes back to its lane once the dead job's lock lapsed.
    wait_for(lambda: not stack.r.exists(key), LOCK_TTL + SWEEP_INTERVAL + 60,
             "the sweep to hand the dead job's batch back")
    handed_back = since_kill()
    wait_for(lambda: len(stack.persisted(orphaned)) == len(orphaned), 120, "the orphaned batch to be applied")
    applied = since_kill()
    wait_for(lambda: len(stack.persisted(acked_at_kill)) == len(acked_at_kill), 120,
             "every report acknowledged before the kill to be in state")
    caught_up = since_kill()

    client.finish(120)  # the load ran through the recovery; RQ's own check needs none

    # RQ: the dead job leaves 'started' (retried, or moved to failed) once RQ notices it.
    def rq_noticed() -> bool:
        try:
            return Job.fetch(job_id, connection=stack.r).get_status() != "started"
        except NoSuchJobError:
            return True

    wait_for(rq_noticed, 200, "RQ to notice the abandoned job")
    rq_noticed_after = since_kill()

    figures = assert_nothing_lost(stack, client, consumer)
    figures.update({
        "killAttempts": attempts,
        "reportsInTheKilledBatch": len(orphaned),
        "secondsFromKillToBatchHandedBack": handed_back,
        "secondsFromKillToKilledBatchApplied": applied,
        "secondsFromKillToAllAckedBeforeKillPersisted": caught_up,
        "secondsFromKillToRQNoticingTheAbandonedJob": rq_noticed_after,
    })
    report_figures("worker_sigkill", figures)
    assert_no_secret_in_logs(stack)
