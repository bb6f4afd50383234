"""app/group_commit.py: the requests a web process has in hand share one Redis write, and a
request returns only once its own write is in Redis.

"A write is in flight" is set up by holding the commit lock from the test, as the thread
running that write does; the writes then queue exactly as they do under load.
"""

from __future__ import annotations

import threading

import orjson
import pytest
import redis

from app import enqueue, keys
from app.enqueue import Write
from app.errors import StoreUnavailable
from app.group_commit import GroupCommit
from app.keys import QUARANTINE, lane_of
from tests.conftest import commandstats
from tools.redis_server import free_port
from tools.wait import wait_for


def evals(r: redis.Redis) -> int:
    """How many hand-off scripts Redis has run (each is one write of one batch): on a cluster,
    its primaries together."""
    return sum(node.get("cmdstat_eval", {}).get("calls", 0) for node in commandstats(r))


def one_write(lanes: int) -> int:
    """The scripts one write runs: one on a single Redis, one per lane it touches on a cluster
    (app/enqueue.py `_push_sharded`)."""
    return lanes if keys.sharded() else 1


def write(n: int, lane: int = 0, quarantine: bytes | None = None) -> Write:
    return Write({lane: [orjson.dumps({"n": n})]}, quarantine)


def inbox(r: redis.Redis, lane: int = 0) -> list[int]:
    return [orjson.loads(item)["n"] for item in r.lrange(enqueue.lane(lane).inbox, 0, -1)]


class Requests:
    """Threads that each push one write, as gunicorn's threads do; collects what each got."""

    def __init__(self, group: GroupCommit) -> None:
        self.group = group
        self.threads: list[threading.Thread] = []
        self.errors: dict[int, BaseException] = {}
        self.returned: list[int] = []

    def start(self, *writes: tuple[int, Write]) -> None:
        for n, w in writes:
            thread = threading.Thread(target=self._push, args=(n, w))
            thread.start()
            self.threads.append(thread)

    def _push(self, n: int, w: Write) -> None:
        try:
            self.group.push(w)
            self.returned.append(n)
        except BaseException as err:
            self.errors[n] = err

    def join(self) -> None:
        for thread in self.threads:
            thread.join(10)
        assert not any(thread.is_alive() for thread in self.threads)


def hold_until_queued(group: GroupCommit, count: int) -> None:
    """Wait (bounded) until `count` writes queue behind the held commit lock."""
    wait_for(lambda: len(group._queued) == count, 10, f"{count} writes to queue")


def test_a_lone_push_is_written_at_once(r):
    group = GroupCommit(r, 100)
    before = evals(r)
    group.push(write(1))
    assert inbox(r) == [1] and evals(r) == before + 1


def test_writes_that_arrive_during_a_write_share_the_next_one(r):
    group = GroupCommit(r, 100)
    requests = Requests(group)
    before = evals(r)
    with group._commit_lock:  # a write in flight
        requests.start(*((n, write(n, lane=n % 2)) for n in range(8)))
        hold_until_queued(group, 8)
        assert inbox(r, 0) == [] and inbox(r, 1) == []  # nobody returned before its write is in
    requests.join()
    assert evals(r) == before + one_write(lanes=2)  # one write for all eight
    assert sorted(requests.returned) == list(range(8)) and not requests.errors
    assert sorted(inbox(r, 0)) == [0, 2, 4, 6] and sorted(inbox(r, 1)) == [1, 3, 5, 7]


def test_every_quarantine_record_of_a_batch_is_kept(r):
    group = GroupCommit(r, 100)
    requests = Requests(group)
    with group._commit_lock:
        requests.start(*((n, write(n, quarantine=f"q{n}".encode())) for n in range(3)))
        hold_until_queued(group, 3)
    requests.join()
    assert sorted(r.lrange(QUARANTINE, 0, -1)) == [b"q0", b"q1", b"q2"]


@pytest.fixture
def unreachable() -> redis.Redis:
    client = redis.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5, retry=None)
    yield client
    client.close()


def test_a_failed_write_fails_every_request_in_it(unreachable):
    group = GroupCommit(unreachable, 100)
    requests = Requests(group)
    with group._commit_lock:
        requests.start(*((n, write(n)) for n in range(4)))
        hold_until_queued(group, 4)
    requests.join()
    assert requests.returned == []  # none may answer 200
    assert sorted(requests.errors) == [0, 1, 2, 3]
    for err in requests.errors.values():
        assert isinstance(err, StoreUnavailable) and isinstance(err.__cause__, redis.RedisError)


def test_a_request_that_cannot_get_its_turn_gives_up_and_leaves_nothing_queued(r):
    group = GroupCommit(r, 100, wait=0.05)
    with group._commit_lock, pytest.raises(StoreUnavailable):  # the write in flight hangs
        group.push(write(1))
    assert group._queued == []
    group.push(write(2))  # the next request does not carry the one that gave up
    assert inbox(r) == [2]


class Interrupted(BaseException):
    """Stops a thread past every `except Exception`, as an interruption would."""


class InterruptingLanes(dict):
    """Lanes whose reading stops the thread that writes them, halfway through its batch."""

    def items(self):
        raise Interrupted


def test_requests_carried_by_a_write_that_stopped_midway_do_not_answer_200(r):
    group = GroupCommit(r, 100)
    requests = Requests(group)
    with group._commit_lock:
        requests.start((1, Write(InterruptingLanes({0: [b"{}"]}))))
        hold_until_queued(group, 1)
        requests.start((2, write(2)))
        hold_until_queued(group, 2)  # whichever takes the lock first writes both, and stops
    requests.join()
    assert requests.returned == [] and inbox(r) == []  # nothing written, nobody told otherwise
    assert sorted(type(err).__name__ for err in requests.errors.values()) == [
        "Interrupted", "StoreUnavailable"]
    group.push(write(3))  # the next request is written as usual
    assert inbox(r) == [3]


def test_the_app_hands_off_through_one_group_commit(app, infobip, r):
    from tests.samples import push, report

    assert isinstance(app.extensions["group_commit"], GroupCommit)
    before = evals(r)
    assert infobip.dlr(push(report("m1"), report("m2"))).status_code == 200
    lanes = {lane_of(m, 4) for m in ("m1", "m2")}
    assert evals(r) == before + one_write(len(lanes))  # one request, one write, whatever its lanes
