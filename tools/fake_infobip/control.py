"""`FakeControl(base_url)`: the fake's control API (`/_fake/`, see control_api.py) from Python.

    fake = FakeControl("http://127.0.0.1:9090")
    fake.add_reports(count=3, bulkId="b1")
    fake.fail("/sms/1/reports", status=429, count=2, retry_after=1)
    fake.hang("/sms/1/text/advanced", apply=True)   # the send is made, its answer never comes
    fake.sends(); fake.pushes(); fake.calls()
"""

from __future__ import annotations

from typing import Any

import orjson
import urllib3


class FakeControl:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = urllib3.PoolManager(retries=False, timeout=timeout)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        answer = self._http.request(method, f"{self.base_url}/_fake/{path}",
                                    body=None if body is None else orjson.dumps(body),
                                    headers={"Content-Type": "application/json"})
        if answer.status != 200:
            raise RuntimeError(f"fake control {method} {path}: HTTP {answer.status} {answer.data[:200]!r}")
        return orjson.loads(answer.data)

    def health(self) -> bool:
        return bool(self._call("GET", "health")["ok"])

    def reset(self) -> None:
        self._call("POST", "reset")

    def add_reports(self, reports: list[dict[str, Any]] | None = None, logged: bool = True,
                    **generate: Any) -> list[str]:
        """Given reports, or `count=n` generated ones (`bulkId`, `status`, `error`, `to`); their ids."""
        body = {"reports": reports} if reports is not None else generate
        return self._call("POST", "reports", {**body, "logged": logged})["messageIds"]

    def add_inbox(self, messages: list[dict[str, Any]] | None = None, **generate: Any) -> list[str]:
        body = {"messages": messages} if messages is not None else generate
        return self._call("POST", "inbox", body)["messageIds"]

    def fail(self, path: str, status: int = 503, count: int = 1, retry_after: float | None = None,
             method: str | None = None) -> None:
        self._call("POST", "faults", {"path": path, "status": status, "count": count,
                                      "retryAfter": retry_after, "method": method})

    def hang(self, path: str, count: int = 1, apply: bool = False, method: str | None = None) -> None:
        """The next `count` calls are read, then never answered (until `release()`); with
        `apply` they take effect first (a send is made and logged)."""
        self._call("POST", "faults", {"path": path, "count": count, "hang": True, "apply": apply,
                                      "method": method})

    def drop(self, path: str, count: int = 1, apply: bool = False, method: str | None = None) -> None:
        """The next `count` calls are read, then their connection is closed without an answer."""
        self._call("POST", "faults", {"path": path, "count": count, "drop": True, "apply": apply,
                                      "method": method})

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def release(self) -> None:
        self._call("POST", "release")

    def withhold(self, all: bool | None = None, message_ids: list[str] = ()) -> None:
        body: dict[str, Any] = {"messageIds": list(message_ids)}
        if all is not None:
            body["all"] = all
        self._call("POST", "withhold", body)

    def outcome(self, to: str, status: int, error: int = 0) -> None:
        self._call("POST", "outcomes", {to: {"status": status, "error": error}})

    def advance_clock(self, seconds: float) -> str:
        return self._call("POST", "clock", {"advance": seconds})["now"]

    def settings(self, notify_delay: float | None = None, retry_scale: float | None = None) -> dict[str, Any]:
        given = (("notifyDelay", notify_delay), ("retryScale", retry_scale))
        body = {k: v for k, v in given if v is not None}
        return self._call("POST", "settings", body)

    def sends(self) -> list[dict[str, Any]]:
        return self._call("GET", "sends")["results"]

    def pushes(self) -> list[dict[str, Any]]:
        return self._call("GET", "pushes")["results"]

    def calls(self, path: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self._call("GET", "calls")["results"] if path in (None, c["path"])]

    def pending(self) -> dict[str, int]:
        return self._call("GET", "pending")
