"""A Redis Cluster primary SIGKILLed under load (SPEC §12, docs/RELIABILITY.md).

Three primaries with a replica each (tools/redis_topology.py) hold the data plane
(REDIS_CLUSTER_NODES); RQ's queues stay on the stack's single Redis (REDIS_URL). The primary
serving lane 0's hash tag is SIGKILLed while Infobip (the load client) posts reports; its
replica takes over (cluster-node-timeout 2 s). Meanwhile ingest answers 503 for requests with
items in that primary's lanes (never a 500) and the load client resends; drain jobs of those
lanes fail and RQ retries them. In the end every report answered 200 is in state and delivered
once by event id, and the time from the kill until ingest answers 200 again is measured.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from app import enqueue, keys, store
from app.connection import make_client, queue_client
from app.keys import INBOUND, MESSAGE
from tests.consumers import ConsumerServer
from tests.faults.harness import MO_MARK, Stack, assert_nothing_lost, report_figures, wait_for
from tests.faults.test_fault_sentinel import back_to_200
from tools.redis_topology import ClusterTopology

pytestmark = pytest.mark.faults


class ClusterStack(Stack):
    """The usual stack (its Redis for RQ) with the data plane on a 3+3 cluster."""

    def __init__(self, tmp: Path, consumer: ConsumerServer) -> None:
        super().__init__(tmp, consumer)
        self.topology = ClusterTopology(tmp / "cluster")

    def start(self) -> Stack:
        self.topology.start()
        return super().start()

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.topology.stop()
            keys.shard(0)  # this test process made a cluster client: back to one Redis's names

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.topology.env()}

    @property
    def r(self) -> redis.Redis:
        if self._client is None:
            self._client = make_client({"REDIS_URL": self.redis_server.url, "DRAIN_LANES": 4,
                                        **self.topology.env()})
        return self._client

    def live_workers(self) -> int:
        from rq import Worker

        try:
            return sum(1 for w in Worker.all(connection=queue_client(self.r)) if w.get_state() != "suspended")
        except redis.RedisError:
            return 0

    def persisted(self, message_ids: list[str]) -> set[str]:
        found = set()
        for message_id in message_ids:
            template = INBOUND if MO_MARK in message_id else MESSAGE
            if store.get_any_lane(self.r, template, message_id=message_id):
                found.add(message_id)
        return found


STACK = ClusterStack


def test_cluster_primary_sigkilled_under_load_loses_nothing_acknowledged(stack, load, consumer):
    client = load(rate=10, size=20, mo_every=5)
    wait_for(lambda: len(client.acked) >= 200, 60, "the load to be acknowledged")
    acked_before = len(client.acked)
    old = stack.topology.node_for_slot(key_slot(enqueue.lane(0).inbox.encode()))
    old.kill()
    killed_at = time.monotonic()
    new = stack.topology.wait_takeover(old, timeout=60)
    promoted_after = round(time.monotonic() - killed_at, 1)
    acked_at_takeover = len(client.acked)
    wait_for(lambda: len(client.acked) > acked_at_takeover, 60, "ingest to answer 200 again")
    time.sleep(5)  # steady load on the new primary
    client.finish(120)
    figures = assert_nothing_lost(stack, client, consumer)
    first_refused, first_200 = back_to_200(client, killed_at)
    # Requests whose lanes all live on the other primaries go on with 200 throughout; what
    # matters is when the last request touching the killed primary's lanes was refused.
    refusals = [t for t, status in list(client.timeline) if t >= killed_at and status != 200]
    last_refused = round(max(refusals) - killed_at, 1) if refusals else None
    assert first_200 is not None, "ingest answered 200 again after the takeover"
    assert new is not old
    figures.update({
        "acknowledgedBeforeKill": acked_before,
        "secondsFromKillToReplicaPrimary": promoted_after,
        "secondsFromKillToFirstRefusal": first_refused,
        "secondsFromKillToFirst200": first_200,
        "secondsFromKillToLastRefusal": last_refused,
        "retryAfterValues": dict(client.retry_after),
    })
    report_figures("cluster_primary_sigkill", figures)
