"""app/codes.py holds every row of the seed's "КОДЫ ОТВЕТОВ" tables, as the seed writes them.

The seed's tables are parsed here from a verbatim copy (payloads/seed_response_codes.txt), so
a row missing from codes.py, or one with another group, name, action or permanent flag, fails.
"""

from __future__ import annotations

import re

import pytest

from app.codes import (
    ERROR_GROUPS,
    FINAL_GROUP_IDS,
    GSM_ERRORS,
    STATUS_GROUPS,
    STATUSES,
    action_for,
    description_for,
)
from tests.samples import PAYLOADS

SEED = (PAYLOADS / "seed_response_codes.txt").read_text(encoding="utf-8")


def seed_rows(heading: str, until: str) -> list[list[str]]:
    """Tab-separated data rows between two headings; the PDF's split names are joined again."""
    section = SEED.split(heading, 1)[1].split(until, 1)[0]
    rows = [line.split("\t") for line in section.splitlines() if re.match(r"^\d+\t", line)]
    return [[cell.strip() for cell in row] for row in rows]


def name(cell: str) -> str:
    return cell.replace(" ", "")


SEED_STATUS_GROUPS = seed_rows("### Статусы групп", "### Статусы\n")
SEED_STATUSES = seed_rows("### Статусы\n", "### Группы ошибок")
SEED_ERROR_GROUPS = seed_rows("### Группы ошибок", "### Коды ошибок GSM")
SEED_GSM_ERRORS = seed_rows("### Коды ошибок GSM", "\x00")


def test_seed_tables_have_the_documented_sizes():
    assert (len(SEED_STATUS_GROUPS), len(SEED_STATUSES), len(SEED_ERROR_GROUPS), len(SEED_GSM_ERRORS)) == (
        6,
        33,
        4,
        91,
    )


def test_status_groups_are_the_seed_rows():
    expected = {int(gid): (gname, description) for gid, gname, description in SEED_STATUS_GROUPS}
    assert {g.id: (g.name, g.description) for g in STATUS_GROUPS.values()} == expected


def test_statuses_are_the_seed_rows():
    expected = {
        int(sid): (int(gid), name(sname), description, None if action == "NULL" else action)
        for sid, gid, sname, description, action in SEED_STATUSES
    }
    got = {s.id: (s.group_id, s.name, s.description, s.action) for s in STATUSES.values()}
    assert got == expected
    assert {51, 52} <= set(STATUSES)


def test_error_groups_are_the_seed_rows():
    expected = {int(gid): (gname, description) for gid, gname, description in SEED_ERROR_GROUPS}
    assert {g.id: (g.name, g.description) for g in ERROR_GROUPS.values()} == expected


def test_gsm_errors_are_the_seed_rows():
    expected = {
        int(eid): (int(gid), name(ename), description, permanent.lower() == "истинно")
        for eid, gid, ename, description, permanent in SEED_GSM_ERRORS
    }
    got = {e.id: (e.group_id, e.name, e.description, e.permanent) for e in GSM_ERRORS.values()}
    assert got == expected


@pytest.mark.parametrize(
    ("code", "group_id", "error_name", "permanent"),
    [
        (0, 0, "NO_ERROR", False),
        (1, 1, "EC_UNKNOWN_SUBSCRIBER", True),
        (27, 1, "EC_ABSENT_SUBSCRIBER", False),
        (502, 1, "EC_NO_RESPONSE", False),  # the seed writes "ложно" in lower case here
        (1027, 1, "EC_OR_ENCAPSULATEDAC_NOTSUPPORTED", False),  # split "NOTSUPPORT ED" in the seed
        (2050, 3, "EC_DEST_ADDRESS_BLACKLISTED", True),
        (4101, 2, "EC_VALIDITYEXPIRED", True),
        (5000, 0, "VOICE_ANSWERED", True),
        (5005, 2, "EC_VOICE_ERROR_UNSUPPORTED_AUDIO_FORMAT", True),
    ],
)
def test_gsm_error_spot_checks(code, group_id, error_name, permanent):
    row = GSM_ERRORS[code]
    assert (row.group_id, row.name, row.permanent) == (group_id, error_name, permanent)


@pytest.mark.parametrize(
    ("code", "group_id", "status_name", "action"),
    [
        (1, 1, "PENDING_TIME_VIOLATION", None),
        (3, 1, "PENDING_WAITING_DELIVERY", None),
        (5, 3, "DELIVERED_TO_HANDSET", None),
        (6, 5, "REJECTED_NETWORK", "Свяжитесь с аккаунт-менеджером"),
        (15, 4, "EXPIRED_EXPIRED", None),
        (30, 3, "DELIVERED", None),
        (51, 5, "MISSING_TO", "Проверьте параметр to."),
        (52, 5, "REJECTED_DESTINATION", "Проверьте параметр to."),
    ],
)
def test_status_spot_checks(code, group_id, status_name, action):
    row = STATUSES[code]
    assert (row.group_id, row.name, row.action) == (group_id, status_name, action)


def test_status_id_0_is_not_in_the_table():
    """The seed's own send answers use status 0 MESSAGE_ACCEPTED, which no table lists."""
    assert 0 not in STATUSES


def test_names_have_no_spaces():
    rows = [*STATUS_GROUPS.values(), *STATUSES.values(), *ERROR_GROUPS.values(), *GSM_ERRORS.values()]
    assert all(row.name for row in rows)
    assert [row.name for row in rows if " " in row.name] == []


def test_final_groups_are_undeliverable_delivered_expired_rejected():
    assert {STATUS_GROUPS[g].name for g in FINAL_GROUP_IDS} == {
        "UNDELIVERABLE",
        "DELIVERED",
        "EXPIRED",
        "REJECTED",
    }


def test_english_texts_are_infobips_where_it_gives_them_and_the_names_otherwise():
    assert description_for(STATUSES[5], "en") == "Message delivered to handset"
    assert description_for(GSM_ERRORS[0], "en") == "No Error"
    assert description_for(STATUSES[30], "en") == "DELIVERED"  # no English text: the name
    assert description_for(STATUSES[5], "ru") == "Сообщение доставлено на устройство"
    assert (action_for(STATUSES[6], "en"), action_for(STATUSES[6], "ru")) == (
        "Contact account manager", "Свяжитесь с аккаунт-менеджером")
    for row in [*STATUS_GROUPS.values(), *STATUSES.values(), *ERROR_GROUPS.values(), *GSM_ERRORS.values()]:
        english = description_for(row, "en")
        assert english.isascii() and english.strip(), row  # never the seed's Russian
