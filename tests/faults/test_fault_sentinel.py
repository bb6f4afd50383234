"""The Sentinel primary SIGKILLed under load (SPEC §12, docs/RELIABILITY.md).

A primary, two replicas and three sentinels (tools/redis_topology.py); every process of the
Procfile finds the primary through the sentinels (REDIS_SENTINELS) and writes with
REDIS_MIN_REPLICAS=1: ingest answers 200 only once a replica holds the report too. The primary
is SIGKILLed while Infobip (the load client) posts reports; the sentinels promote a replica,
and every process moves to it by itself. Until then ingest answers 503 with Retry-After (never
a 500); the load client resends. In the end every report answered 200 is in the new primary's
state and delivered once by event id, and the time from the kill until ingest answers 200
again is measured.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from app.connection import make_client
from tests.consumers import ConsumerServer
from tests.faults.harness import (
    LoadClient,
    Stack,
    assert_no_secret_in_logs,
    assert_nothing_lost,
    report_figures,
    wait_for,
)
from tools.redis_topology import SentinelTopology

pytestmark = pytest.mark.faults

UNUSED_URL = "redis://127.0.0.1:1/0"  # REDIS_SENTINELS wins over REDIS_URL


class Topology:
    """What the harness's Stack needs of its Redis (start, stop, url, data_dir), for a topology."""

    def __init__(self, tmp: Path) -> None:
        self.topology = SentinelTopology(tmp / "topology")
        self.url = UNUSED_URL
        self.data_dir = self.topology.nodes[0].data_dir  # the first primary's log for Stack.logs

    def start(self) -> None:
        self.topology.start()

    def stop(self) -> None:
        self.topology.stop()


class SentinelStack(Stack):
    def __init__(self, tmp: Path, consumer: ConsumerServer) -> None:
        super().__init__(tmp, consumer)
        self.redis_server = Topology(tmp)  # type: ignore[assignment]
        self.topology = self.redis_server.topology

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.topology.env(), "REDIS_MIN_REPLICAS": "1", "REDIS_WAIT_MS": "1000"}

    @property
    def r(self) -> redis.Redis:
        if self._client is None:
            self._client = make_client({"REDIS_URL": UNUSED_URL, **self.topology.env()})
        return self._client


STACK = SentinelStack  # the `stack` fixture (tests/faults/conftest.py) starts this one


def back_to_200(client: LoadClient, killed_at: float) -> tuple[float | None, float | None]:
    """Seconds from the kill to the first answer that was not 200, and to the first 200 after it."""
    after = [(t, status) for t, status in list(client.timeline) if t >= killed_at]
    refused = next((t for t, status in after if status != 200), None)
    if refused is None:
        return None, 0.0
    back = next((t for t, status in after if t > refused and status == 200), None)
    return round(refused - killed_at, 1), (round(back - killed_at, 1) if back else None)


def test_sentinel_primary_sigkilled_under_load_loses_nothing_acknowledged(stack, load, consumer):
    client = load(rate=10, size=20, mo_every=5)
    wait_for(lambda: len(client.acked) >= 200, 60, "the load to be acknowledged")
    acked_before = len(client.acked)
    old = stack.topology.kill_primary()
    killed_at = time.monotonic()
    new = stack.topology.wait_failover(old, timeout=60)
    promoted_after = round(time.monotonic() - killed_at, 1)
    acked_at_failover = len(client.acked)
    wait_for(lambda: len(client.acked) > acked_at_failover, 60, "ingest to answer 200 again")
    stack.topology.rejoin(old)  # the old primary's host comes back: a replica of the new one
    time.sleep(5)  # steady load on the new primary
    client.finish(120)
    figures = assert_nothing_lost(stack, client, consumer)
    first_refused, first_200 = back_to_200(client, killed_at)
    assert first_200 is not None, "ingest answered 200 again after the failover"
    assert all(value and value.isdigit() for value in client.retry_after), "every 503 has Retry-After"
    assert new is not old
    with stack.topology.primary().client() as c:  # `new`, unless the sentinels failed over again
        assert c.info("replication")["connected_slaves"] == 2  # the other replica and the old primary
    figures.update({
        "acknowledgedBeforeKill": acked_before,
        "secondsFromKillToNewPrimary": promoted_after,
        "secondsFromKillToFirstRefusal": first_refused,
        "secondsFromKillToFirst200": first_200,
        "retryAfterValues": dict(client.retry_after),
    })
    report_figures("sentinel_primary_sigkill", figures)
    assert_no_secret_in_logs(stack)


def test_both_replicas_lost_ingest_refuses_until_one_is_back(stack, load, consumer):
    """REDIS_MIN_REPLICAS=1 with no replica left: the primary still takes writes, but nothing is
    acknowledged that a failover could lose. Ingest answers 503 `not_replicated` (Retry-After 5),
    drain jobs fail and are retried; once a replica is back, all of it goes through, once."""
    client = load(rate=10, size=20, mo_every=5)
    wait_for(lambda: len(client.acked) >= 100, 60, "the load to be acknowledged")
    primary = stack.topology.primary()
    replicas = stack.topology.replicas()
    for replica in replicas:
        replica.kill()
    killed_at = time.monotonic()
    wait_for(lambda: client.retry_after["5"] >= 3, 60, "ingest to answer 503 not_replicated")
    time.sleep(3)
    for replica in replicas:
        replica.start()  # same port, same data; it resyncs from the primary
    back_at = time.monotonic()
    acked_when_back = len(client.acked)
    wait_for(lambda: len(client.acked) > acked_when_back, 60, "ingest to answer 200 again")
    first_200 = round(time.monotonic() - back_at, 1)
    time.sleep(3)
    client.finish(120)
    figures = assert_nothing_lost(stack, client, consumer)
    assert stack.topology.primary() is primary, "no failover: the primary was never down"
    figures.update({
        "secondsWithoutReplicas": round(back_at - killed_at, 1),
        "answersNotReplicated": client.retry_after["5"],
        "retryAfterValues": dict(client.retry_after),
        "secondsFromReplicasBackToFirst200": first_200,
        "drainJobsFailedNotReplicated": stack.procs["worker"].log.read_text().count("NotReplicated: "),
    })
    report_figures("sentinel_replicas_lost", figures)
