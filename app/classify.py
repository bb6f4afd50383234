"""Classify a report's status and error against Infobip's tables, liberally.

Infobip's own samples contradict its tables (SPEC §2.1): a status with groupId 3 and
groupName PENDING, status id 1 named PENDING_WAITING_DELIVERY, status id 0 that no table has,
error group "Ok" beside "OK". Such reports are accepted: groupName wins over groupId, missing
names and descriptions are filled from the tables, and every contradiction becomes a warning.

Descriptions and actions are filled in English (Infobip's wording, else the code's name), or
in the seed's Russian with CODE_DESCRIPTIONS=ru; one that Infobip sent is never replaced.

A classification depends only on the object and the language, and a campaign's reports repeat a
handful of statuses and errors: each distinct object is classified once and remembered
(app/memo.py).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from app.codes import (
    ERROR_GROUPS,
    FINAL_GROUP_IDS,
    GSM_ERRORS,
    STATUS_GROUPS,
    STATUSES,
    Group,
    action_for,
    description_for,
)
from app.memo import json_key

_STATUS_GROUPS_BY_NAME = {g.name.upper(): g for g in STATUS_GROUPS.values()}
_ERROR_GROUPS_BY_NAME = {g.name.upper(): g for g in ERROR_GROUPS.values()}


def _resolve_group(
    what: str, obj: dict[str, Any], by_id: dict[int, Group], by_name: dict[str, Group], warnings: list[str]
) -> Group | None:
    gid, gname = obj.get("groupId"), obj.get("groupName")
    named = by_name.get(gname.upper()) if gname else None
    numbered = by_id.get(gid) if gid is not None else None
    if gname and named is None:
        warnings.append(f"{what}.groupName {gname!r} is not in Infobip's table")
    if gid is not None and numbered is None:
        warnings.append(f"{what}.groupId {gid} is not in Infobip's table")
    if named and numbered and named.id != numbered.id:
        warnings.append(
            f"{what}.groupId {gid} ({numbered.name}) contradicts groupName {gname!r}; groupName wins"
        )
    return named or numbered


def _check_row(what: str, obj: dict[str, Any], row: Any, warnings: list[str]) -> bool:
    """True when the table row may fill gaps: the id is known and the report's name agrees."""
    code = obj.get("id")
    if code is None:
        return False
    if row is None:
        warnings.append(f"{what}.id {code} is not in Infobip's table")
        return False
    name = obj.get("name")
    if name and name.upper() != row.name.upper():
        warnings.append(f"{what}.id {code} is {row.name} in Infobip's table, the report says {name}")
        return False
    return True


def _fill(obj: dict[str, Any], group: Group | None, fields: dict[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    if group is not None:
        out["groupId"], out["groupName"] = group.id, group.name
    for key, value in fields.items():
        if out.get(key) in (None, ""):
            out[key] = value
    return out


def classify_status(status: dict[str, Any] | None, warnings: list[str],
                    language: str = "en") -> tuple[dict[str, Any] | None, bool]:
    """Return the filled status and whether it is final."""
    if not status:
        warnings.append("report has no status")
        return status, False
    filled, final = _remembered(_classify_status, status, warnings, language)
    return filled, final


def classify_error(error: dict[str, Any] | None, warnings: list[str],
                   language: str = "en") -> dict[str, Any] | None:
    if not error:
        return error
    (filled,) = _remembered(_classify_error, error, warnings, language)
    return filled


def _remembered(classify: Any, obj: dict[str, Any], warnings: list[str], language: str) -> tuple:
    """`classify(obj, language)` -> (filled dict, *rest, warnings), once per distinct object;
    the caller gets its own copy of the filled dict and the warnings added to its list."""
    key = json_key(obj)
    filled, *rest, found = classify(obj, language) if key is None else _by_text(classify, key, language)
    warnings.extend(found)
    return (dict(filled), *rest)


@lru_cache(maxsize=4096)
def _by_text(classify: Any, key: bytes, language: str) -> tuple:
    return classify(orjson.loads(key), language)


def _classify_status(status: dict[str, Any],
                     language: str = "en") -> tuple[dict[str, Any], bool, tuple[str, ...]]:
    warnings: list[str] = []
    row = STATUSES.get(status.get("id"))
    usable = _check_row("status", status, row, warnings)
    group = _resolve_group("status", status, STATUS_GROUPS, _STATUS_GROUPS_BY_NAME, warnings)
    if group is None and usable:
        group = STATUS_GROUPS[row.group_id]
    if group is None:
        warnings.append("status group unknown; treated as intermediate")
    fields = {} if not usable else {
        "name": row.name, "description": description_for(row, language), "action": action_for(row, language)}
    filled = _fill(status, group, {k: v for k, v in fields.items() if v is not None})
    return filled, group is not None and group.id in FINAL_GROUP_IDS, tuple(warnings)


def _classify_error(error: dict[str, Any], language: str = "en") -> tuple[dict[str, Any], tuple[str, ...]]:
    warnings: list[str] = []
    row = GSM_ERRORS.get(error.get("id"))
    usable = _check_row("error", error, row, warnings)
    group = _resolve_group("error", error, ERROR_GROUPS, _ERROR_GROUPS_BY_NAME, warnings)
    if group is None and usable:
        group = ERROR_GROUPS[row.group_id]
    fields = (
        {"name": row.name, "description": description_for(row, language), "permanent": row.permanent}
        if usable else {}
    )
    return _fill(error, group, fields), tuple(warnings)
