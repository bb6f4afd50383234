"""Bench bar (SPEC §12, issue 17 point 4): the campaign on a Redis Cluster, against one Redis in
the same run.

The same campaign as bar 7 (`Run.campaign`: unique reports in 100-report buckets through wrk,
the whole service running as in production, one HTTP consumer counting event ids) twice, one
after the other, with the same settings but the data plane:
1. on one redis-server (AOF, `appendfsync always`): the baseline;
2. on a Redis Cluster of three primaries with a replica each (tools/redis_topology.py, AOF
   `appendfsync always` on every node), RQ's queues on a redis-server of their own
   (`REDIS_CLUSTER_NODES` + `REDIS_URL`, as deploy/docker-compose.cluster.yml).
Both use `DRAIN_LANES=16` (docs/SCALING.md: at least 4 lanes per primary, so the lanes' hash tags
spread over the three primaries). The one-Redis server is stopped before the cluster starts, so
the two never share the machine.

Bars: on the cluster, 0 lost and 0 duplicate deliveries; memory per stored message (the sum of
the primaries' used_memory after minus before, per message; replicas hold a copy each on top)
<= 1 KB; end-to-end reports/s on the cluster at least 0.8x one Redis's. Ingest reports/s
(answered while the workers ran) is printed beside it as information.

    make bench-cluster   (python -m bench.run --plan full --only cluster: 1,000,000 reports each)
    python -m bench.run --only cluster [--scale N]   (short plan: 20,000 each)
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

import redis
from redis.cluster import ClusterNode, RedisCluster

from tools.redis_topology import HOST, ClusterTopology

if TYPE_CHECKING:
    from bench.run import Run

LANES = "16"
RATE_BAR = 0.8


def primaries_memory(topology: ClusterTopology) -> int:
    """used_memory summed over the cluster's primaries (each once no AOF rewrite runs)."""
    from bench.run import used_memory

    total = 0
    for node in topology.primaries():
        with node.client() as c:
            total += used_memory(c)
    return total


def one_redis(run: Run, reports: int) -> dict[str, Any]:
    from bench.run import OUT

    server = run.redis_server("cluster-baseline")
    r = redis.Redis.from_url(server.url)
    ids = OUT / "ids-cluster"
    try:
        run.note_load("cluster-baseline")
        with run.stack(r, ids, REDIS_URL=server.url, DRAIN_LANES=LANES) as web:
            return run.campaign(r, web, ids, reports, "o")
    finally:
        r.close()
        server.stop()


def on_cluster(run: Run, reports: int) -> dict[str, Any]:
    from bench.run import OUT

    base = OUT / "redis-cluster"
    shutil.rmtree(base, ignore_errors=True)
    topology = ClusterTopology(base)
    queue_server = run.redis_server("cluster-rq")
    queue = redis.Redis.from_url(queue_server.url)
    data = None
    ids = OUT / "ids-cluster"
    try:
        topology.start()
        nodes = topology.env()["REDIS_CLUSTER_NODES"]
        data = RedisCluster(startup_nodes=[ClusterNode(HOST, n.port) for n in topology.nodes[:3]])
        run.note_load("cluster")
        env = {"REDIS_URL": queue_server.url, "REDIS_CLUSTER_NODES": nodes, "DRAIN_LANES": LANES}
        with run.stack(queue, ids, **env) as web:
            found = run.campaign(data, web, ids, reports, "k", memory=lambda: primaries_memory(topology))
        for node in topology.primaries():
            with node.client() as c:
                found.setdefault("primaries_keys", {})[node.port] = c.dbsize()
        return found
    finally:
        if data is not None:
            data.close()
        queue.close()
        queue_server.stop()
        topology.stop()


def exact(found: dict[str, Any]) -> bool:
    return not (found["lost"] or found["duplicates"] or found["unexpected"] or found["buckets_bad"])


def cluster(run: Run) -> None:
    from bench.run import Bar

    reports = run.plan.scale_big
    one = one_redis(run, reports)
    many = on_cluster(run, reports)
    run.raw["cluster"] = {"one_redis": one, "cluster": many}
    run.add(Bar(
        f"cluster.exact.{reports}", f"cluster (3 primaries + 3 replicas), {reports:,} reports: lost + "
        "duplicate deliveries", many["lost"] + many["duplicates"],
        f"(lost {many['lost']}, duplicates {many['duplicates']}, unexpected {many['unexpected']}, "
        f"non-200 buckets {many['buckets_bad']}; {many['delivered_distinct']:,} distinct event ids at the "
        f"consumer; one Redis: lost {one['lost']}, duplicates {one['duplicates']})", "0 lost, 0 duplicates",
        exact(many) and exact(one), details={"keys_by_primary": many["primaries_keys"]}))
    run.add(Bar(
        "cluster.memory", f"cluster memory per stored message ({reports:,}; primaries' used_memory, summed)",
        many["bytes_per_message"], f"bytes (one Redis: {one['bytes_per_message']:,.0f})", "<= 1024 bytes",
        many["bytes_per_message"] <= 1024))
    pair = (("one", one), ("cluster", many))
    rate = {name: found["reports"] / found["seconds"] for name, found in pair}
    ratio = rate["cluster"] / rate["one"]
    run.add(Bar(
        "cluster.rate", f"cluster reports/s end to end, {reports:,} reports", ratio,
        f"x one Redis ({rate['cluster']:,.0f} vs {rate['one']:,.0f} reports/s, first request to last "
        "delivery)", f">= {RATE_BAR}x", ratio >= RATE_BAR,
        baseline=f"one Redis {rate['one']:,.0f} reports/s"))
    ingest = {name: found["reports"] / found["ingest_seconds"] for name, found in pair}
    run.add(Bar(
        "cluster.rate.ingest", f"cluster ingest reports/s while the workers ran, {reports:,} reports",
        ingest["cluster"] / ingest["one"], f"x one Redis ({ingest['cluster']:,.0f} vs {ingest['one']:,.0f} "
        "reports/s answered)", "none (information)", True, extra=True))
