"""The fault-test harness (docs/RELIABILITY.md): real processes, started exactly as in production.

Each test gets its own `Stack`: a redis-server (tools/redis_server.py, AOF `appendfsync always`)
on a free port in a tmp dir, and the Procfile's processes with their real command lines
(gunicorn with deploy/gunicorn.conf.py, `rq worker` for `receiver`, two for `deliveries`,
`rq cron workers.cron`), each in its own session so that a kill reaches its work-horses too.
A supervisor thread restarts any process that exits, as systemd `Restart=always` or Kubernetes
would. A `ConsumerServer` (tests/consumers.py) in this process is the HTTP consumer; a
`LoadClient` thread plays Infobip: it posts buckets of unique delivery reports at a steady
rate, records which messageIds were answered 200, and resends a bucket that was not (503,
connection error), as Infobip retries.

Every wait is bounded in time and in count; nothing asserts how fast something happened. The
figures a test measures (load, recovery times) go to FAULTS_REPORT_DIR when that is set.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import redis

from tests.conftest import API_KEY, BASIC_PASSWORD, BASIC_USER, TOKEN
from tests.consumers import SECRET, ConsumerServer, http_consumer, routes_text
from tests.samples import push, report
from tools import wait
from tools.redis_server import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CONSUMER = "crm"
MO_MARK = "-mo-"  # in the messageId of the load's inbound SMS
POLL = 0.2  # seconds between two looks at the system in every wait loop


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> float:
    """tools.wait.wait_for at this harness's pace (POLL)."""
    return wait.wait_for(predicate, timeout, what, interval=POLL)


def secrets() -> dict[str, str]:
    """Every configured secret, and the encodings in which one could leak."""
    return {
        "WEBHOOK_TOKEN": TOKEN,
        "WEBHOOK_BASIC_PASSWORD": BASIC_PASSWORD,
        "Basic pair": base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode(),
        "API key": API_KEY,
        "consumer secret": SECRET,
        "consumer key": SECRET.removeprefix("whsec_"),
    }


# --- processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    """One child process in its own session (process group = its pid), output to a log file."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen | None = None
    starts: int = 0

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts + 1}: {shlex.join(self.args)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                          stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        """Signal every process still in our process group (its id is our child's pid), by pid.
        Members are looked up in /proc: while one exists, the group id cannot belong to anyone
        else, so even after our child is gone its orphans (rq's scheduler) are surely ours."""
        if self.popen is None:
            return
        for pid in group_members(self.popen.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def signal_tree(self, sig: int) -> None:
        """Signal the process and every descendant. An rq work-horse calls setpgrp(), so it is
        in a process group of its own: a signal to the worker's group alone does not reach it.
        Only while our child is alive: then its pid, and its children's, are surely ours."""
        if not self.alive():
            return
        for pid in [self.popen.pid, *descendants(self.popen.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def kill_tree(self) -> None:
        self.signal_tree(signal.SIGKILL)

    def kill(self) -> None:
        self.kill_tree()
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate, wait, then kill; and kill what is left of the group (orphaned horses)."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            for pid in descendants(self.popen.pid):  # work-horses have sessions of their own
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        self.kill()


def procfile(redis_url: str) -> dict[str, list[str]]:
    """The Procfile's commands with this stack's Redis URL and the venv's executables."""
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if not line.strip():
            continue
        name, command = line.split(":", 1)
        args = [redis_url if word == "$REDIS_URL" else word for word in shlex.split(command)]
        args[0] = str(BIN / args[0])
        commands[name.strip()] = args
    return commands


class Stack:
    """redis-server + web + worker + 2 deliverers + scheduler, with a supervisor."""

    def __init__(self, tmp: Path, consumer: ConsumerServer, retry_schedule: str = "[1, 1, 1, 2]") -> None:
        self.tmp = tmp
        self.redis_server = EmbeddedRedis(tmp / "redis")
        self.port = free_port()
        self.routes = tmp / "routes.yml"
        entry = http_consumer(CONSUMER, f"{consumer.url}/{CONSUMER}", events='["*"]',
                              retry_schedule=retry_schedule, timeout=2)
        self.routes.write_text(routes_text(entry))
        self.procs: dict[str, Proc] = {}
        self.held: set[str] = set()  # names the supervisor must not restart now
        self.restarts: list[tuple[float, str, int | None]] = []
        self._supervising = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._client: redis.Redis | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def r(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.redis_server.url, socket_timeout=5,
                                                socket_connect_timeout=2)
        return self._client

    def env(self) -> dict[str, str]:
        return {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(self.tmp),  # gunicorn's control socket goes there: one per stack
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": self.redis_server.url,
            "WEBHOOK_TOKEN": TOKEN,
            "WEBHOOK_BASIC_USER": BASIC_USER,
            "WEBHOOK_BASIC_PASSWORD": BASIC_PASSWORD,
            "API_KEYS": API_KEY,
            "ROUTES_FILE": str(self.routes),
            "DRAIN_LANES": "4",
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "WEB_CONCURRENCY": "2",
        }

    def start(self) -> Stack:
        self.redis_server.start()
        env = self.env()
        commands = procfile(self.redis_server.url)
        plan = {"web": commands["web"], "worker": commands["worker"], "deliverer-1": commands["deliverer"],
                "deliverer-2": commands["deliverer"], "scheduler": commands["scheduler"]}
        for name, args in plan.items():
            self.procs[name] = Proc(name, args, env, self.tmp / f"{name}.log").start()
        self._supervising.set()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()
        wait_for(self._web_answers, 60, "gunicorn to answer /healthz")
        wait_for(lambda: self.live_workers() >= 3, 60, "three rq workers to register")
        return self

    def _web_answers(self) -> bool:
        try:
            return get(self.port, "/healthz")[0] == 200
        except OSError:
            return False

    def live_workers(self) -> int:
        from rq import Worker

        try:
            return sum(1 for w in Worker.all(connection=self.r) if w.get_state() != "suspended")
        except redis.RedisError:
            return 0

    def _supervise(self) -> None:
        """Restart what exits, half a second later (systemd's RestartSec), until told to stop."""
        while self._supervising.is_set():
            for name, proc in list(self.procs.items()):
                if name in self.held or proc.alive() or not self._supervising.is_set():
                    continue
                code = proc.popen.returncode if proc.popen else None
                time.sleep(0.5)
                if self._supervising.is_set() and name not in self.held:
                    self.restarts.append((time.monotonic(), name, code))
                    proc.kill()  # what is left of its group
                    proc.start()
            time.sleep(0.1)

    def stop(self) -> None:
        self._supervising.clear()
        if self._supervisor is not None:
            self._supervisor.join(10)
        for proc in self.procs.values():
            proc.stop()
        self.redis_server.stop()
        if self._client is not None:
            self._client.close()

    # --- what the tests look at ---------------------------------------------------------------

    def persisted(self, message_ids: list[str]) -> set[str]:
        """The messageIds whose state is in Redis: msg:<id> for a report, in:<id> for an MO."""
        pipe = self.r.pipeline(transaction=False)
        for message_id in message_ids:
            pipe.exists(f"in:{message_id}" if MO_MARK in message_id else f"msg:{message_id}")
        return {m for m, found in zip(message_ids, pipe.execute(), strict=True) if found}

    def logs(self) -> str:
        texts = [p.log.read_text(errors="replace") for p in self.procs.values() if p.log.exists()]
        redis_log = self.redis_server.data_dir / "redis.log"
        if redis_log.exists():
            texts.append(redis_log.read_text(errors="replace"))
        return "\n".join(texts)

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, data, _ = request(self.port, method, path, orjson.dumps(body) if body is not None else None,
                                  {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
        return status, orjson.loads(data) if data else None


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, bytes, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Connection": "close", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read(), resp
    finally:
        conn.close()


def get(port: int, path: str) -> tuple[int, bytes]:
    status, data, _ = request(port, "GET", path, timeout=5)
    return status, data


# --- the load: Infobip posting reports --------------------------------------------------------


@dataclass
class Bucket:
    ids: list[str]
    body: bytes | None
    path: str = f"/infobip/dlr?token={TOKEN}"
    method: str = "POST"
    due: float = 0.0
    attempts: int = 0


@dataclass
class LoadClient:
    """Posts buckets of `size` unique reports at `rate` requests a second, from one thread, and
    every `mo_every`-th request an inbound SMS instead.

    A bucket answered 200 is acknowledged (its messageIds go to `acked`); any other answer or a
    connection error means not acknowledged, and the bucket is resent `retry_delay` later (as
    Infobip resends, on a compressed schedule). `finish()` stops new buckets and resends until
    every bucket is acknowledged, or gives up after its timeout.
    """

    port: int
    prefix: str
    rate: float = 10.0
    size: int = 20
    retry_delay: float = 1.0
    max_requests: int = 20_000
    mo_every: int = 0  # every n-th request an inbound SMS forward (0: none; the fault tests use 5)
    acked: set[str] = field(default_factory=set)
    sent: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    first_try: Counter = field(default_factory=Counter)
    retry_after: Counter = field(default_factory=Counter)
    pending: deque = field(default_factory=deque)
    timeline: list[tuple[float, int | str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._made = 0
        self._new = threading.Event()
        self._new.set()
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._count = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LoadClient:
        self._thread.start()
        return self

    def _bucket(self) -> Bucket:
        """Mostly a bucket of reports; every `mo_every`-th request an inbound SMS forward (GET),
        which takes the same path through lanes, state and fan-out."""
        self._made += 1
        if self.mo_every and self._made % self.mo_every == 0:
            message_id = f"{self.prefix}{MO_MARK}{self._made:06d}"
            self.sent.append(message_id)
            query = urlencode({"token": TOKEN, "sender": "38598111", "receiver": "41793026727",
                               "text": f"Hello {self._made}", "messageid": message_id})
            return Bucket([message_id], None, f"/infobip/mo?{query}", "GET")
        start = len(self.sent)
        ids = [f"{self.prefix}-{n:06d}" for n in range(start, start + self.size)]
        self.sent.extend(ids)
        return Bucket(ids, orjson.dumps(push(*(report(i, bulkId=self.prefix) for i in ids))))

    def _post(self, bucket: Bucket) -> None:
        bucket.attempts += 1
        try:
            status, data, resp = request(self.port, bucket.method, bucket.path, bucket.body,
                                         {"Content-Type": "application/json"})
        except (OSError, http.client.HTTPException) as err:
            status, data, resp = type(err).__name__, b"", None
        with self._lock:
            self.statuses[status] += 1
            if bucket.attempts == 1:
                self.first_try[status] += 1
            self.timeline.append((time.monotonic(), status))
            if status == 503 and resp is not None:
                self.retry_after[resp.getheader("Retry-After")] += 1
            if status == 200 and orjson.loads(data)["accepted"] == len(bucket.ids):
                self.acked.update(bucket.ids)
            else:
                bucket.due = time.monotonic() + self.retry_delay
                self.pending.append(bucket)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._halt.is_set() and self._count < self.max_requests:
            now = time.monotonic()
            with self._lock:
                retry = self.pending.popleft() if self.pending and self.pending[0].due <= now else None
            if retry is not None:
                self._post(retry)
            elif self._new.is_set():
                self._post(self._bucket())
            elif not self.pending:
                return  # finishing, and everything is acknowledged
            self._count += 1
            next_at += 1.0 / self.rate
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic() - 1.0)  # do not burst to catch up

    def finish(self, timeout: float = 120.0) -> None:
        self._new.clear()
        self._thread.join(timeout)
        self._halt.set()
        assert not self._thread.is_alive(), "the load client did not stop"
        with self._lock:
            assert not self.pending, f"{len(self.pending)} buckets never acknowledged"

    def halt(self) -> None:
        self._halt.set()
        self._thread.join(15)

    def count(self, status: int | str) -> int:
        with self._lock:
            return self.statuses[status]


# --- what the consumer got --------------------------------------------------------------------


def delivered(consumer: ConsumerServer) -> dict[str, Counter]:
    """messageId -> Counter of event ids the consumer answered 2xx, from the bodies it got."""
    out: dict[str, Counter] = {}
    for seen in consumer.requests(f"/{CONSUMER}"):
        if seen.status is None or not 200 <= seen.status < 300:
            continue
        event = seen.event
        assert seen.event_id == event["id"], "webhook-id is the event id"
        out.setdefault(event["data"]["messageId"], Counter())[event["id"]] += 1
    return out


def assert_nothing_lost(stack: Stack, load: LoadClient, consumer: ConsumerServer,
                        timeout: float = 120.0) -> dict[str, Any]:
    """acknowledged = persisted = delivered, by distinct event id; returns the figures."""
    acked = sorted(load.acked)
    assert set(acked) == set(load.sent), "every bucket was acknowledged in the end"
    wait_for(lambda: len(stack.persisted(acked)) == len(acked), timeout, "every acknowledged report in state")
    wait_for(lambda: set(delivered(consumer)) >= set(acked), timeout, "every acknowledged report delivered")
    mine = set(load.sent)  # other load clients may share the consumer
    got = {message_id: ids for message_id, ids in delivered(consumer).items() if message_id in mine}
    assert set(got) == set(acked)
    assert all(len(ids) == 1 for ids in got.values()), "one event per report: one event id per messageId"
    copies = sum(sum(ids.values()) for ids in got.values())
    figures = {
        "reportsSent": sum(1 for m in load.sent if MO_MARK not in m),
        "inboundSmsSent": sum(1 for m in load.sent if MO_MARK in m),
        "acknowledged": len(acked),
        "persisted": len(stack.persisted(acked)),
        "deliveredDistinctEventIds": len(got),
        "deliveredCopies": copies,
        "lost": len(set(acked) - set(got)),
        "requests": dict(load.statuses),
        "firstTry": dict(load.first_try),
        "processRestarts": [name for _, name, _ in stack.restarts],
    }
    assert figures["acknowledged"] == figures["persisted"] == figures["deliveredDistinctEventIds"]
    assert 500 not in load.statuses, "never a 500"
    return figures


def assert_no_secret_in_logs(stack: Stack) -> None:
    text = stack.logs()
    assert text, "the processes wrote logs"
    leaked = [name for name, value in secrets().items() if value in text]
    assert leaked == [], f"secrets in process logs: {leaked}"


def report_figures(name: str, figures: dict) -> None:
    """Write the measured figures for docs/RELIABILITY.md (FAULTS_REPORT_DIR), and print them."""
    print(f"\n{name}: {json.dumps(figures)}")
    folder = os.environ.get("FAULTS_REPORT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps(figures, indent=2))


def descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... of `pid`, from /proc."""
    found: list[int] = []
    todo = [pid]
    for _ in range(1000):  # bounded: a process tree here is a handful deep
        if not todo:
            break
        children = children_of(todo.pop())
        found.extend(children)
        todo.extend(children)
    return found


def _processes() -> Iterator[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process, from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # state, ppid, pgrp, ...
        yield int(entry.name), int(fields[1]), int(fields[2])


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (gunicorn's workers)."""
    return [child for child, parent, _ in _processes() if parent == pid]


def group_members(pgid: int) -> list[int]:
    return [pid for pid, _, group in _processes() if group == pgid]
