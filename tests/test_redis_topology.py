"""The topologies the Sentinel and Cluster tests run on (tools/redis_topology.py) are what they
claim: replicated, watched, failing over, and gone when stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from tools.redis_server import free_port
from tools.redis_topology import SLOTS, ClusterTopology, SentinelTopology, cluster_port, wait_until


def alive(nodes) -> list:
    return [n for n in nodes if n.process is not None and n.process.poll() is None]


def both_replicas_confirm(topology: SentinelTopology) -> bool:
    with topology.primary().client() as c:
        c.set("rejoined", 1)
        return c.wait(2, 1000) == 2


def test_sentinel_topology_replicates_and_fails_over(tmp_path: Path):
    topology = SentinelTopology(tmp_path, password="pw-1", sentinel_password="spw-2").start()
    try:
        primary = topology.primary()
        assert primary is topology.nodes[0]
        assert {s.master_port() for s in topology.sentinels} == {primary.port}
        for replica in topology.nodes[1:]:
            info = replica.info()
            assert info["role"] == "slave" and info["master_port"] == primary.port
        with primary.client() as c:
            assert c.config_get("appendfsync") == {"appendfsync": "always"}
            c.set("kept", "yes")
            assert c.wait(2, 5000) == 2, "both replicas confirm the write"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=primary.port).set("x", 1)  # the password is required
        assert topology.env()["REDIS_SENTINEL_PASSWORD"] == "spw-2"

        old = topology.kill_primary()
        new = topology.wait_failover(old)
        assert new is not old and new in topology.nodes[1:]
        with new.client() as c:
            assert c.get("kept") == b"yes"
            c.set("after", 1)
            assert c.wait(1, 5000) == 1, "the other replica follows the new primary"
        topology.rejoin(old)
        # The current primary: on a loaded machine the sentinels (down-after 1 s) may have
        # failed over once more meanwhile, which is their job; then a replica resyncs for a while.
        wait_until(lambda: both_replicas_confirm(topology), 30, "the old primary to be a replica again")
    finally:
        topology.stop()
    assert alive([*topology.nodes, *topology.sentinels]) == []


def test_cluster_topology_has_three_primaries_with_a_replica_each(tmp_path: Path):
    topology = ClusterTopology(tmp_path).start()
    try:
        primaries = topology.primaries()
        assert len(primaries) == 3 and primaries == topology.nodes[:3]
        for primary in primaries:
            assert [r.info()["master_port"] for r in topology.replicas_of(primary)] == [primary.port]
        with primaries[0].client() as c:
            ranges = c.execute_command("CLUSTER SLOTS")
        assert sum(high - low + 1 for low, high, *_ in ranges) == SLOTS
        host, port = topology.addresses[0].split(":")
        rc = RedisCluster(host=host, port=int(port))
        try:
            for i in range(300):
                rc.set(f"key:{i}", i)
            served = {topology.node_for_slot(rc.keyslot(f"key:{i}")).port for i in range(300)}
            assert served == {p.port for p in primaries}, "keys spread over every primary"

            old = topology.node_for_slot(rc.keyslot("key:7"))
            old.kill()
            new = topology.wait_takeover(old)
            assert new in topology.replicas_of(old)
            rc.nodes_manager.initialize()
            assert rc.get("key:7") == b"7", "the replica that took over has the primary's data"
        finally:
            rc.close()
    finally:
        topology.stop()
    assert alive(topology.nodes) == []


def test_free_port_never_hands_out_a_port_twice():
    """Tests pick several ports before any server binds one; the kernel would give a freed port
    out again (about nine repeats in 500 picks from Linux's range), so free_port remembers."""
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
    bus = cluster_port() + 10000
    assert all(free_port() != bus for _ in range(200))
