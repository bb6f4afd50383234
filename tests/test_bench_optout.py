"""bench/optout.py, the opt-out check's bar, runs against the keys the service reads: it wrote
the opt-outs under a key without its lane tag once, and `make bench` stopped there."""

from __future__ import annotations

import pytest

from bench import optout


def test_the_optout_bench_measures_what_the_api_answers(redis_server, redis_cluster):
    if redis_cluster is not None:
        pytest.skip("the bench seeds one Redis, as `make bench` runs it")
    found = optout.measure(redis_server.url, rounds=1)  # asserts each answer's opted-out count
    assert found["key"] == "optout.check" and found["figure"] > 0
