"""SPEC §12 on real topologies (tools/redis_topology.py): every client comes from
app/connection.py, finds the primary through Sentinel and follows a failover; REDIS_MIN_REPLICAS
makes ingest and the drain's state transactions wait for replicas, and refuse when too few
confirm (503 + Retry-After at ingest, a failed and retried job in the worker)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue
from rq.cli.helpers import get_redis_from_config
from rq.job import Job

from app import create_app, enqueue, handoff, keys, store
from app.config import check_redis
from app.connection import (
    Replication,
    addresses,
    after_failure,
    cluster_client,
    make_client,
    queue_client,
    rq_settings,
)
from app.errors import ConfigError, NotReplicated
from app.keys import QUEUE_NAME
from tests.conftest import clear_route_caches, commandstats
from tests.samples import push, report
from tools.redis_topology import ClusterTopology, SentinelTopology

HANDOFF = {"DRAIN_LANES": 4, "QUARANTINE_MAX": 100}
# Under `--redis=cluster` this process's data plane is the cluster (keys carry lane tags), which
# is not Sentinel's topology: these run with the suite on one Redis (`make test`).
SENTINEL_ONLY = "Sentinel is the other topology; its tests run on one Redis (make test)"


def inbox_items(r: redis.Redis) -> int:
    return sum(r.llen(enqueue.lane(lane).inbox) for lane in range(4))


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    topology = SentinelTopology(tmp_path_factory.mktemp("sentinel"), password="pw-s12",
                                sentinel_password="spw-s12").start()
    yield topology
    topology.stop()


def sentinel_config(config: dict[str, Any], topology: SentinelTopology, **extra: Any) -> dict[str, Any]:
    return {**config, "REDIS_URL": "redis://127.0.0.1:1/0",  # never used: Sentinel wins
            **topology.env(), "REDIS_MIN_REPLICAS": 0, "REDIS_WAIT_MS": 500, **extra}


# --- configuration -----------------------------------------------------------------------------


def test_sentinel_addresses_parse_or_stop_start_up():
    assert addresses("a:26379, b:26380") == [("a", 26379), ("b", 26380)]
    for bad in ("a", "a:port", ":1"):
        with pytest.raises(ConfigError, match="REDIS_SENTINELS"):
            check_redis({"REDIS_SENTINELS": bad})
    with pytest.raises(ConfigError, match="REDIS_MIN_REPLICAS"):
        check_redis({"REDIS_MIN_REPLICAS": -1})
    with pytest.raises(ConfigError, match="REDIS_WAIT_MS"):
        check_redis({"REDIS_MIN_REPLICAS": 1, "REDIS_WAIT_MS": 0})
    check_redis({"REDIS_CLUSTER_NODES": "127.0.0.1:7000,127.0.0.1:7001"})  # accepted: SPEC §12 is built
    with pytest.raises(ConfigError, match="REDIS_CLUSTER_NODES"):
        check_redis({"REDIS_CLUSTER_NODES": "127.0.0.1"})
    check_redis({"REDIS_CLUSTER_NODES": "127.0.0.1:7000", "REDIS_MIN_REPLICAS": 1, "REDIS_WAIT_MS": 100})


def test_on_a_cluster_a_write_counts_once_its_primarys_replica_holds_it(tmp_path: Path, r: redis.Redis,
                                                                      monkeypatch: pytest.MonkeyPatch):
    """WAIT on a cluster (Replication.in_slots): a marker written in the items' slot after them,
    and WAIT on the marker's connection. A replica that is connected but stopped confirms
    nothing, so the write is refused (503 at ingest); running, it confirms."""
    monkeypatch.setitem(keys._SHARDED, "lanes", keys._SHARDED["lanes"])  # cluster_client sets it
    topology = ClusterTopology(tmp_path / "wait", primaries=1, replicas_each=1).start()
    queue = queue_client(r)
    enqueue.lane.cache_clear()  # lane names are cached per process: these are the cluster's
    try:
        client = cluster_client(topology.env()["REDIS_CLUSTER_NODES"], None, 4, queue)
        write = enqueue.Write(handoff.by_lane("dlr", handoff.validate("dlr", [report("m1")])[0], 4))
        enqueue.push(client, [write], replication=Replication(1, 5000))  # confirmed: no error
        # A second client: the confirmation must not depend on which connection carried the
        # write (in a web process, threads share the pool).
        other = cluster_client(topology.env()["REDIS_CLUSTER_NODES"], None, 4, queue)
        replica = topology.nodes[1]
        replica.process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(NotReplicated):
                enqueue.push(client, [write], replication=Replication(1, 300))
            assert Replication(1, 300).in_slots(other, [enqueue.lane(0).inbox]) == 0
        finally:
            replica.process.send_signal(signal.SIGCONT)
        assert Replication(1, 5000).in_slots(other, [enqueue.lane(0).inbox]) == 1
        other.close()
        assert sum(client.llen(enqueue.lane(n).inbox) for n in range(4)) == 2, "both on the primary"
        client.close()
    finally:
        topology.stop()
        enqueue.lane.cache_clear()  # the next test's names are its topology's again
        Queue(QUEUE_NAME, connection=queue).empty()  # the kicks named lanes of that cluster


def test_a_cluster_with_no_node_left_is_a_redis_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """redis-py raises RedisClusterException, which is no RedisError, when it can reach no node
    to re-read the slot map: the client raises the ConnectionError instead, so a lost cluster is
    a 503 and a retried job as one Redis down is (the 'Redis down' tests, under --redis=cluster)."""
    monkeypatch.setitem(keys._SHARDED, "lanes", keys._SHARDED["lanes"])  # cluster_client sets it
    lost = ClusterTopology(tmp_path / "lost", primaries=1, replicas_each=0).start()
    try:
        client = cluster_client(lost.env()["REDIS_CLUSTER_NODES"], None, 4, redis.Redis())
        client.set("before", 1)
    finally:
        lost.stop()
    with pytest.raises(redis.ConnectionError):
        client.set("after", 1)
    after_failure(client)  # no node to ask: nothing raised, the next call tries again
    client.close()


def test_rq_settings_name_the_same_redis_as_the_web_tier(config):
    assert rq_settings(config) == {"REDIS_URL": config["REDIS_URL"], "SENTINEL": None}
    sentinel = rq_settings({**config, "REDIS_SENTINELS": "h1:1,h2:2", "REDIS_SENTINEL_MASTER": "m",
                            "REDIS_PASSWORD": "p", "REDIS_SENTINEL_PASSWORD": "sp"})
    assert sentinel["REDIS_URL"] is None
    assert sentinel["SENTINEL"]["INSTANCES"] == [("h1", 1), ("h2", 2)]
    assert sentinel["SENTINEL"]["MASTER_NAME"] == "m" and sentinel["SENTINEL"]["PASSWORD"] == "p"
    assert sentinel["SENTINEL"]["SENTINEL_KWARGS"]["password"] == "sp"


# --- Sentinel -----------------------------------------------------------------------------------


@pytest.mark.single_redis(SENTINEL_ONLY)
def test_every_client_finds_the_primary_through_sentinel(sentinels, config):
    cfg = sentinel_config(config, sentinels)
    primary = sentinels.primary()
    web = make_client(cfg)
    worker = get_redis_from_config(rq_settings(cfg))  # what `rq worker -c workers.rq_settings` makes
    for client in (web, worker):
        client.set(f"probe:{id(client)}", 1)
        with primary.client() as direct:
            assert direct.get(f"probe:{id(client)}") == b"1"
        client.close()


@pytest.mark.single_redis(SENTINEL_ONLY)
def test_ingest_waits_for_the_replicas_it_requires(sentinels, config, r):
    app = create_app(sentinel_config(config, sentinels, REDIS_MIN_REPLICAS=2))
    client = make_client(app.config)
    client.flushall()
    answer = app.test_client().post("/infobip/dlr", json=push(report("s12-a"), report("s12-b")),
                                    query_string={"token": config["WEBHOOK_TOKEN"]})
    assert answer.status_code == 200, answer.json
    for replica in sentinels.replicas():  # WAIT 2 returned: both replicas hold the items already
        with replica.client() as c:
            assert sum(c.llen(enqueue.lane(lane).inbox) for lane in range(4)) == 2
    assert app.test_client().get("/readyz").json["redisReplicas"] == 2
    metrics = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {config['API_KEYS'][0]}"})
    assert "receiver_redis_replicas 2.0" in metrics.text


@pytest.mark.single_redis(SENTINEL_ONLY)
def test_transactions_wait_on_their_own_connection(sentinels, config):
    client = make_client(sentinel_config(config, sentinels))
    with Replication(2, 2000).transaction(client) as pipe:
        pipe.set("tx:1", 1)
        pipe.execute()
    assert pipe.acks == 2
    with Replication(0, 0).transaction(client) as pipe:
        assert not hasattr(pipe, "acks")  # no WAIT at all without REDIS_MIN_REPLICAS
    client.close()


@pytest.mark.single_redis(SENTINEL_ONLY)
def test_the_web_tier_follows_a_failover(tmp_path: Path, config):
    topology = SentinelTopology(tmp_path / "failover").start()
    try:
        app = create_app(sentinel_config(config, topology, REDIS_MIN_REPLICAS=1))
        web = app.test_client()
        token = {"token": config["WEBHOOK_TOKEN"]}
        assert web.post("/infobip/dlr", json=push(report("before")), query_string=token).status_code == 200
        old = topology.kill_primary()
        during = web.post("/infobip/dlr", json=push(report("during")), query_string=token)
        assert during.status_code == 503 and during.headers["Retry-After"]  # never a 500
        new = topology.wait_failover(old)
        after = web.post("/infobip/dlr", json=push(report("after")), query_string=token)
        assert after.status_code == 200, after.json
        with new.client() as c:
            items = b"".join(b for lane in range(4) for b in c.lrange(enqueue.lane(lane).inbox, 0, -1))
        assert b'"before"' in items and b'"after"' in items, "the acknowledged report survived the failover"
    finally:
        topology.stop()


# --- too few replicas: one Redis has none, each primary of the test cluster has one ---------------


def more_replicas_than_there_are() -> int:
    return 2 if keys.sharded() else 1


def test_ingest_answers_503_with_retry_after_when_replicas_do_not_confirm(config, r):
    app = create_app({**config, "REDIS_MIN_REPLICAS": more_replicas_than_there_are(), "REDIS_WAIT_MS": 20})
    answer = app.test_client().post("/infobip/dlr", json=push(report("lonely")),
                                    query_string={"token": config["WEBHOOK_TOKEN"]})
    assert answer.status_code == 503
    assert answer.json["error"] == "not_replicated" and answer.headers["Retry-After"] == "5"
    assert inbox_items(r) == 1, "the primary has it; the resent report will be applied once"


def test_adapters_are_told_when_replicas_do_not_confirm(r):
    required = {**HANDOFF, "REDIS_MIN_REPLICAS": more_replicas_than_there_are(), "REDIS_WAIT_MS": 20}
    with pytest.raises(NotReplicated):
        handoff.accept(r, required, "dlr", [report("pulled")], source="pull", body=b"{}", path="/infobip/dlr")


def test_no_wait_is_sent_when_no_replica_is_required(client, r, work, config):
    if keys.sharded():
        r.config_resetstat(target_nodes=r.PRIMARIES)  # type: ignore[attr-defined]
    else:
        r.config_resetstat()
    token = {"token": config["WEBHOOK_TOKEN"]}
    answer = client.post("/infobip/dlr", json=push(report("plain")), query_string=token)
    assert answer.status_code == 200
    work()
    assert store.get_message(r, "plain")
    assert not any("cmdstat_wait" in node for node in commandstats(r))


@pytest.fixture
def worker_requires_a_replica(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("REDIS_MIN_REPLICAS", str(more_replicas_than_there_are()))
    monkeypatch.setenv("REDIS_WAIT_MS", "20")
    clear_route_caches()
    yield
    clear_route_caches()


def test_a_drain_job_whose_batch_replicas_do_not_confirm_fails_and_is_retried(
        r, work, worker_requires_a_replica, caplog):
    handoff.accept(r, HANDOFF, "dlr", [report("w1")], source="push", body=b"{}", path="/infobip/dlr")
    [job_id] = Queue(QUEUE_NAME, connection=queue_client(r)).job_ids
    work()
    job = Job.fetch(job_id, connection=queue_client(r))
    assert job.get_status() == "scheduled" and job.retries_left == 9, "RQ retries the job"
    assert "NotReplicated" in caplog.text
    assert store.get_message(r, "w1"), "the primary applied it; the re-run changes nothing twice"
