"""The application factory's Flask subclass (app/__init__.py)."""

from __future__ import annotations

import pytest


def test_ensure_sync_still_tells_async_functions_apart(app):
    """`Receiver.ensure_sync` remembers its answer per function: a plain function (or a method
    of one) is returned as is, every time; an `async def` still goes to Flask's async support
    (not installed here, so Flask says so)."""

    class View:
        def get(self):
            return "sync"

    async def coroutine():
        return "async"

    def plain():
        return "sync"

    for _ in range(2):
        assert app.ensure_sync(plain) is plain
        method = View().get
        assert app.ensure_sync(method) is method
        with pytest.raises(RuntimeError, match="async"):
            app.ensure_sync(coroutine)
