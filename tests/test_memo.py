"""app/memo.py and its two users: a remembered result must be exactly the fresh one, every time."""

from __future__ import annotations

import pytest

from app import classify, memo


def test_json_key_keeps_value_types_apart():
    keys = {memo.json_key({"id": value}) for value in (1, 1.0, True, "1", None)}
    assert len(keys) == 5


@pytest.mark.parametrize(
    "value",
    [None, [1], "text", {"id": 2**70}, {"description": "x" * memo.MAX_KEY_BYTES}],
    ids=["none", "list", "str", "int-beyond-64-bits", "too-large"],
)
def test_json_key_refuses_what_it_should_not_remember(value):
    assert memo.json_key(value) is None


@pytest.mark.parametrize(
    "status",
    [
        {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"},
        {"groupId": 3, "groupName": "PENDING", "id": 1},  # contradictions: warnings
        {"groupId": 99, "id": 777, "name": "NEW"},  # unknown everything
        {"groupId": 3, "description": "x" * memo.MAX_KEY_BYTES},  # too large to remember
    ],
)
def test_a_remembered_classification_is_the_fresh_one_every_time(status):
    fresh = classify._classify_status(status)
    for _ in range(3):
        warnings = ["earlier"]
        filled, final = classify.classify_status(status, warnings)
        assert (filled, final, tuple(warnings[1:])) == fresh
        filled["name"] = "changed by a caller"  # a caller's copy: the next one is untouched


def test_a_remembered_error_classification_adds_its_warnings_each_time():
    error = {"groupId": 0, "groupName": "Ok", "id": 9999}
    fresh, found = classify._classify_error(error)
    assert found  # an id no table has
    for _ in range(2):
        warnings: list[str] = []
        assert classify.classify_error(error, warnings) == fresh
        assert warnings == list(found)
