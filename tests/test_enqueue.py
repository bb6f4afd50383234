"""app/enqueue.py `push`: the atomic step that puts ingest's items into the inbox lanes.

The drain side of the protocol (claim, apply, hand back, sweep) is tests/test_drain.py.
"""

from __future__ import annotations

import orjson
from rq import Queue
from rq.job import Job

from app import enqueue
from app.connection import queue_client
from app.enqueue import Write
from app.keys import QUARANTINE, QUEUE_NAME


def items(*numbers: int) -> list[bytes]:
    return [orjson.dumps({"n": n}) for n in numbers]


def inbox(r, lane: int) -> list[int]:
    return [orjson.loads(item)["n"] for item in r.lrange(enqueue.lane(lane).inbox, 0, -1)]


def test_items_of_several_writes_land_in_their_lanes_in_order(r):
    enqueue.push(r, [Write({0: items(1, 2), 3: items(3)}), Write({3: items(4), 1: items(5)})])
    assert (inbox(r, 0), inbox(r, 1), inbox(r, 3)) == ([1, 2], [5], [3, 4])


def test_a_free_lane_is_taken_and_gets_one_drain_job(r):
    enqueue.push(r, [Write({0: items(1)}), Write({0: items(2)})])
    job_id = r.get(enqueue.lane(0).lock).decode()
    assert r.ttl(enqueue.lane(0).lock) > 0  # a job that dies leaves a lock that lapses
    assert Queue(QUEUE_NAME, connection=queue_client(r)).job_ids == [job_id]
    assert Job.fetch(job_id, connection=queue_client(r)).args == (0,)


def test_an_owned_lane_gets_items_but_no_second_job(r):
    r.set(enqueue.lane(2).lock, "running-job", ex=30)
    enqueue.push(r, [Write({2: items(1)})])
    assert inbox(r, 2) == [1]
    assert r.get(enqueue.lane(2).lock) == b"running-job"
    assert Queue(QUEUE_NAME, connection=queue_client(r)).job_ids == []


def test_more_items_than_one_redis_command_takes_all_land_in_order(r):
    """The script appends at most 1,000 items per RPUSH (Lua's unpack has a limit)."""
    numbers = list(range(2_345))
    enqueue.push(r, [Write({1: items(*numbers[:1_500])}), Write({1: items(*numbers[1_500:])})])
    assert inbox(r, 1) == numbers


def test_quarantine_records_of_every_write_are_kept_newest_first_and_capped(r):
    r.lpush(QUARANTINE, b"old-1", b"old-2")
    enqueue.push(r, [Write({0: items(1)}, b"q1"), Write({0: items(2)}), Write({}, b"q3")], quarantine_max=3)
    assert r.lrange(QUARANTINE, 0, -1) == [b"q3", b"q1", b"old-2"]
    assert inbox(r, 0) == [1, 2]


def test_a_write_with_only_a_quarantine_record_touches_no_lane(r):
    enqueue.push(r, [Write({}, b"q1")])
    assert r.lrange(QUARANTINE, 0, -1) == [b"q1"]
    assert r.keys("inbox:*") == [] and r.keys("drain:*") == []
