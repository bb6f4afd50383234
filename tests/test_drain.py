"""workers/drain.py and workers/sweep.py with the hand-off of app/enqueue.py: every item is
applied exactly once, whatever happens to the job that drains it.

Crashes are simulated at the points where a real job can die: after `own` + `claim` (the batch
is claimed and not applied), after the batch was applied, and while another job owns the lane.
"""

from __future__ import annotations

import re
from collections import Counter

import orjson
import pytest
from rq import Queue
from rq.job import Job

from app import dlr, enqueue, keys, quarantine, store
from app.clock import now_text
from app.connection import queue_client
from app.keys import EVENT_STREAM, INDEX_ALL, QUEUE_NAME
from tests.samples import envelopes, ids_in_lane, push, report
from workers import drain, sweep

LANE = 2


def message_id(item: bytes) -> str:
    """The messageId of an inbox item: a report the request checked is there as it came."""
    envelope = orjson.loads(item)
    return (envelope.get("data") or envelope["raw"])["messageId"]


def inbox(r, lane: int = LANE) -> list[str]:
    return [message_id(item) for item in r.lrange(enqueue.lane(lane).inbox, 0, -1)]


def batch(r, job_id: str, lane: int = LANE) -> list[str]:
    return [message_id(item) for item in r.lrange(enqueue.lane(lane).batch(job_id), 0, -1)]


def fill(r, count: int, lane: int = LANE) -> list[str]:
    """Put `count` reports for distinct messages of `lane` into its inbox, without a drain job."""
    ids = ids_in_lane(lane, count)
    r.rpush(enqueue.lane(lane).inbox, *envelopes(*(report(m) for m in ids)))
    return ids


def assert_applied_once(r, ids: list[str]) -> None:
    for message_id in ids:
        found = store.get_message(r, message_id)
        assert found is not None, message_id
        assert len(found["history"]) == 1, message_id
    assert r.xlen(EVENT_STREAM) == len(ids)
    emitted = [orjson.loads(fields[b"event"])["data"]["messageId"] for _, fields in r.xrange(EVENT_STREAM)]
    assert sorted(emitted) == sorted(ids)


def assert_lane_idle(r, lane: int = LANE) -> None:
    assert r.llen(enqueue.lane(lane).inbox) == 0
    assert r.keys(enqueue.lane(lane).batch("*")) == []
    claimed = r.smembers(enqueue.lane(lane).claimed)
    assert not [key for key in claimed if key.startswith(b"batch:")]  # none left listed
    assert r.get(enqueue.lane(lane).lock) is None


# --- the normal path ------------------------------------------------------------------------


def test_drain_applies_a_lane_and_releases_it(r):
    ids = fill(r, 5)
    assert drain.drain(r, LANE, "job-1") == {"new": 5, "duplicate": 0}
    assert_applied_once(r, ids)
    assert_lane_idle(r)


def test_drain_counts_duplicates(r):
    ids = fill(r, 3)
    r.rpush(enqueue.lane(LANE).inbox, *envelopes(report(ids[0]), report(ids[1])))
    assert drain.drain(r, LANE, "job-1") == {"new": 3, "duplicate": 2}
    assert_applied_once(r, ids)


def test_drain_goes_on_over_several_batches(r):
    ids = fill(r, 7)
    assert drain.drain(r, LANE, "job-1", batch_size=2) == {"new": 7, "duplicate": 0}
    assert_applied_once(r, ids)
    assert_lane_idle(r)


def stored(r, message_id: str) -> bytes:
    return orjson.dumps(store.get_message(r, message_id)).replace(message_id.encode(), b"m")


def test_drain_normalizes_what_the_request_checked_as_ingest_did_before(r):
    """A report handed off as it came (`{"raw": ...}`) and one queued before the drain normalized
    (`{"data": ...}`, by a process not yet upgraded) end in the same state."""
    checked, legacy = ids_in_lane(LANE, 2)
    at = now_text()
    r.rpush(enqueue.lane(LANE).inbox, *envelopes(report(checked), received_at=at),
            orjson.dumps({"kind": "dlr", "receivedAt": at, "data": dlr.load(report(legacy))}))
    assert b'"raw":' in r.lindex(enqueue.lane(LANE).inbox, 0)
    assert drain.drain(r, LANE, "job-1") == {"new": 2, "duplicate": 0}
    assert_applied_once(r, [checked, legacy])
    one, other = (re.sub(rb"evt_[0-9a-f]+", b"evt", stored(r, m))
                  for m in (checked, legacy))  # the same, but for their ids
    assert one == other
    assert orjson.loads(one)["status"]["description"]  # filled in from the code tables, as before


def test_a_checked_report_that_does_not_load_is_quarantined_and_the_batch_goes_on(r):
    """Only a web process with other code (an upgrade) hands off a report that does not load."""
    bad, good = ids_in_lane(LANE, 2)
    raw = {"messageId": bad, "status": "DELIVERED"}  # status is an object: no code takes this
    r.rpush(enqueue.lane(LANE).inbox, orjson.dumps({"kind": "dlr", "receivedAt": now_text(), "raw": raw}),
            *envelopes(report(good)))
    assert drain.drain(r, LANE, "job-1") == {"new": 1, "duplicate": 0}
    assert_applied_once(r, [good])
    assert store.get_message(r, bad) is None
    [entry] = quarantine.entries(r)
    assert entry["path"] == "/infobip/dlr" and entry["errors"][0]["errors"]["status"]
    assert orjson.loads(quarantine.body_of(entry)) == {"results": [raw]}  # replayable as it came
    assert_lane_idle(r)


def test_ingest_kicks_one_job_per_lane(infobip, work, r):
    ids = ids_in_lane(LANE, 3)
    for message_id in ids:  # three requests, one lane: the first kicks, the others find it owned
        assert infobip.dlr(push(report(message_id))).status_code == 200
    job_id = r.get(enqueue.lane(LANE).lock).decode()
    assert queue_client(r).llen(f"rq:queue:{QUEUE_NAME}") == 1
    assert Job.fetch(job_id, connection=queue_client(r)).func_name == "workers.drain.run"
    work()
    assert_applied_once(r, ids)
    assert_lane_idle(r)


# --- a job that died mid-batch --------------------------------------------------------------


def test_rerun_of_a_job_that_died_after_claiming_applies_the_batch_once(r):
    ids = fill(r, 5)
    assert enqueue.lane(LANE).own(r, "job-1")
    assert len(enqueue.lane(LANE).claim(r, "job-1")) == 5  # ... and the job was killed here
    assert batch(r, "job-1") == ids and inbox(r) == []

    assert drain.drain(r, LANE, "job-1") == {"new": 5, "duplicate": 0}  # RQ re-runs the same id
    assert_applied_once(r, ids)
    assert_lane_idle(r)


def test_rerun_applies_the_held_batch_first_then_the_rest(r):
    ids = fill(r, 5)
    enqueue.lane(LANE).own(r, "job-1")
    assert len(enqueue.lane(LANE).claim(r, "job-1", size=2)) == 2
    assert batch(r, "job-1") == ids[:2] and inbox(r) == ids[2:]
    # a re-run's claim returns the held batch again, not new items
    assert [message_id(i) for i in enqueue.lane(LANE).claim(r, "job-1")] == ids[:2]

    assert drain.drain(r, LANE, "job-1") == {"new": 5, "duplicate": 0}
    assert_applied_once(r, ids)


def test_rerun_with_real_rq(infobip, work, r):
    """The job ingest enqueued dies after claiming; RQ runs the job with that id again."""
    ids = ids_in_lane(LANE, 4)
    assert infobip.dlr(push(*(report(m) for m in ids))).status_code == 200
    job_id = r.get(enqueue.lane(LANE).lock).decode()
    assert enqueue.lane(LANE).own(r, job_id)
    enqueue.lane(LANE).claim(r, job_id)
    assert batch(r, job_id) == ids

    work()

    assert_applied_once(r, ids)
    assert_lane_idle(r)


def test_rerun_after_a_completed_batch_applies_nothing_twice(r):
    ids = fill(r, 4)
    assert drain.drain(r, LANE, "job-1") == {"new": 4, "duplicate": 0}
    assert drain.drain(r, LANE, "job-1") == {}
    assert_applied_once(r, ids)


def test_job_that_died_after_applying_but_before_releasing(r):
    ids = fill(r, 4)
    enqueue.lane(LANE).own(r, "job-1")
    items = enqueue.lane(LANE).claim(r, "job-1")
    assert drain.apply_batch(r, LANE, "job-1", items, Counter())  # applied; then the job died
    assert r.get(enqueue.lane(LANE).lock) == b"job-1"  # the lane is still held

    assert drain.drain(r, LANE, "job-1") == {}
    assert_applied_once(r, ids)
    assert_lane_idle(r)


def test_rerun_with_real_rq_after_a_completed_job(infobip, work, r):
    ids = ids_in_lane(LANE, 3)
    infobip.dlr(push(*(report(m) for m in ids)))
    job_id = r.get(enqueue.lane(LANE).lock).decode()
    work()
    enqueue.lane(LANE).enqueue_job(r, job_id)  # e.g. a retry RQ scheduled before the success landed
    work()
    assert_applied_once(r, ids)
    assert_lane_idle(r)


# --- a lane owned by someone else -----------------------------------------------------------


def test_job_that_finds_its_lane_owned_hands_its_batch_back(r):
    ids = fill(r, 5)
    enqueue.lane(LANE).own(r, "job-old")
    enqueue.lane(LANE).claim(r, "job-old", size=3)
    r.set(enqueue.lane(LANE).lock, "job-new")  # the lock expired and another job took the lane

    assert drain.drain(r, LANE, "job-old") == {"handedBack": 3}
    assert batch(r, "job-old") == []
    assert inbox(r) == ids  # back at the head, in their order
    assert r.xlen(EVENT_STREAM) == 0

    assert drain.drain(r, LANE, "job-new") == {"new": 5, "duplicate": 0}
    assert_applied_once(r, ids)
    assert_lane_idle(r)


def test_apply_batch_refuses_when_the_lane_is_no_longer_ours(r):
    ids = fill(r, 2)
    enqueue.lane(LANE).own(r, "job-1")
    items = enqueue.lane(LANE).claim(r, "job-1")
    r.set(enqueue.lane(LANE).lock, "job-2")
    assert drain.apply_batch(r, LANE, "job-1", items, Counter()) is False
    assert r.xlen(EVENT_STREAM) == 0
    assert store.get_message(r, ids[0]) is None
    assert batch(r, "job-1") == ids  # still claimed, for the hand-back


def test_own_and_release(r):
    lock = enqueue.lane(LANE).lock
    assert enqueue.lane(LANE).own(r, "a")
    assert 0 < r.ttl(lock) <= enqueue.LOCK_TTL
    assert enqueue.lane(LANE).own(r, "a")  # already ours
    assert not enqueue.lane(LANE).own(r, "b")
    assert enqueue.lane(LANE).release(r, "b") == 0 and r.get(lock) == b"a"  # not b's to release
    fill(r, 2)
    assert enqueue.lane(LANE).release(r, "a") == 2  # released; two items wait
    assert r.get(lock) is None


def test_hand_back_keeps_order_ahead_of_newer_items(r):
    ids = fill(r, 4)
    enqueue.lane(LANE).claim(r, "job-1", size=2)
    assert enqueue.lane(LANE).hand_back(r, "job-1") == 2
    assert inbox(r) == ids
    assert enqueue.lane(LANE).hand_back(r, "job-1") == 0


def test_claimed_batches_are_listed_while_they_exist(r):
    """The sweep finds batches in the `claimed` set instead of scanning every key: each batch
    that exists must be listed (a re-run's too), and none that is gone."""
    channel = enqueue.lane(LANE)
    fill(r, 4)
    channel.claim(r, "job-1", size=2)
    assert r.smembers(enqueue.lane(LANE).claimed) == {channel.batch("job-1").encode()}
    r.srem(enqueue.lane(LANE).claimed, channel.batch("job-1"))  # e.g. claimed by a version before the set
    channel.claim(r, "job-1")  # the re-run gets its batch back, listed again
    assert r.smembers(enqueue.lane(LANE).claimed) == {channel.batch("job-1").encode()}
    channel.hand_back(r, "job-1")
    assert r.smembers(enqueue.lane(LANE).claimed) == set()
    assert channel.claim(r, "job-2", size=0) == []  # nothing claimed
    assert r.smembers(enqueue.lane(LANE).claimed) == set()


@pytest.mark.single_redis("a cluster has no batches of versions before the claimed set: no scan for them")
def test_sweep_lists_batches_claimed_before_the_set_existed_once(r):
    """An upgrade: a batch key that no set lists (its job is gone) is still handed back."""
    ids = fill(r, 3)
    enqueue.lane(LANE).claim(r, "old-version")
    r.delete(enqueue.lane(LANE).claimed)  # as a version before the claimed set left it
    assert sweep.sweep(r)["handedBack"] == 3 and inbox(r) == ids
    enqueue.lane(LANE).claim(r, "old-version-2")
    r.delete(enqueue.lane(LANE).claimed)
    assert sweep.sweep(r).get("handedBack", 0) == 0  # the keyspace is scanned once, not every sweep


def test_sweep_unlists_a_listed_batch_that_is_gone(r):
    channel = enqueue.lane(LANE)
    r.sadd(channel.claimed, channel.batch("gone"))  # its key was dropped without unlisting it
    assert sweep.sweep(r).get("handedBack", 0) == 0
    assert r.smembers(enqueue.lane(LANE).claimed) == set()


# --- the sweep ------------------------------------------------------------------------------


def test_sweep_hands_back_an_orphaned_batch_and_kicks_the_idle_lane(r, work):
    ids = fill(r, 4)
    enqueue.lane(LANE).own(r, "ghost")  # a job id RQ never heard of
    enqueue.lane(LANE).claim(r, "ghost")
    r.delete(enqueue.lane(LANE).lock)  # its lock expired

    done = sweep.sweep(r)
    assert done["handedBack"] == 4 and done["kicked"] == 1
    assert batch(r, "ghost") == [] and inbox(r) == ids

    work()
    assert_applied_once(r, ids)
    assert_lane_idle(r)


def test_sweep_kicks_a_lane_whose_kick_was_lost(r, work):
    """Items were written but the enqueue failed (or the lock expired): the sweep starts a job."""
    ids = fill(r, 3)
    other = fill(r, 2, lane=0)
    done = sweep.sweep(r)
    assert done["kicked"] == 2 and "handedBack" not in done
    work()
    assert_applied_once(r, ids + other)


def test_sweep_leaves_owned_lanes_and_live_jobs_alone(r, work):
    ids = fill(r, 3)
    enqueue.lane(LANE).own(r, "live")
    enqueue.lane(LANE).claim(r, "live", size=2)
    enqueue.lane(LANE).enqueue_job(r, "live")  # queued, not yet run

    assert sweep.sweep(r).get("handedBack", 0) == 0
    assert sweep.sweep(r).get("kicked", 0) == 0
    assert batch(r, "live") == ids[:2]

    work()  # the live job runs, applies its batch and the rest
    assert_applied_once(r, ids)
    assert_lane_idle(r)


def test_sweep_hands_back_the_batch_of_a_finished_job(r, work, infobip):
    """A job that finished (or failed for good) without applying its batch is not live."""
    ids = ids_in_lane(LANE, 2)
    infobip.dlr(push(report(ids[0])))
    job_id = r.get(enqueue.lane(LANE).lock).decode()
    work()  # the job has finished
    r.rpush(enqueue.lane(LANE).inbox, *envelopes(report(ids[1])))
    enqueue.lane(LANE).own(r, job_id)
    enqueue.lane(LANE).claim(r, job_id)
    r.delete(enqueue.lane(LANE).lock)
    assert sweep.sweep(r)["handedBack"] == 1
    work()
    assert_applied_once(r, ids)


def test_sweep_as_an_rq_job(r, work):
    ids = fill(r, 3)
    enqueue.lane(LANE).own(r, "ghost")
    enqueue.lane(LANE).claim(r, "ghost")
    r.delete(enqueue.lane(LANE).lock)
    Queue(QUEUE_NAME, connection=queue_client(r)).enqueue("workers.sweep.run")
    work()  # the sweep, then the drain job it kicked
    assert_applied_once(r, ids)
    assert_lane_idle(r)


def test_sweep_trims_index_entries_older_than_retention(r):
    r.zadd(INDEX_ALL.format(t=keys.tag(LANE)), {"old": 1_000_000_000, "new": 4_000_000_000})
    assert sweep.sweep(r)["expiredIndex"] == 1
    assert r.zrange(INDEX_ALL.format(t=keys.tag(LANE)), 0, -1) == [b"new"]


@pytest.mark.parametrize("lanes_used", [1, 4])
def test_nothing_is_lost_or_doubled_end_to_end(lanes_used, infobip, work, r):
    ids = [m for lane in range(lanes_used) for m in ids_in_lane(lane, 5, prefix=f"e2e{lane}")]
    for start in range(0, len(ids), 3):
        infobip.dlr(push(*(report(m) for m in ids[start : start + 3])))
    infobip.dlr(push(*(report(m) for m in ids)))  # and Infobip resends everything
    work()
    assert_applied_once(r, ids)
    for lane in range(4):
        assert_lane_idle(r, lane)
