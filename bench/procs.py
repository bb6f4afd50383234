"""Processes of a bench run: started in their own session, stopped by PID, sampled for memory.

Everything here is bounded: every wait has a time limit and a count limit, and `Procs.stop_all`
(called from `finally` blocks) stops exactly the processes this run started, by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def parents() -> dict[int, int]:
    """pid -> parent pid of every process, from one pass over /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        table[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return table


def children_of(pid: int, table: dict[int, int] | None = None) -> list[int]:
    return [child for child, parent in (table or parents()).items() if parent == pid]


def tree(pid: int, table: dict[int, int] | None = None) -> list[int]:
    """`pid` and its descendants (gunicorn workers, rq work-horses), from /proc; bounded."""
    table = table or parents()
    found, todo = [pid], [pid]
    for _ in range(1000):
        if not todo:
            break
        children = children_of(todo.pop(), table)
        found.extend(children)
        todo.extend(children)
    return found


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/<pid>/stat): with the pid, it
    names one process, so a pid reused by someone else's process is never signalled."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def signal_if_same(pid: int, started: int | None, sig: int) -> None:
    if started is not None and start_time(pid) == started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mib(pid: int, table: dict[int, int] | None = None) -> float:
    """Resident memory of a process and its descendants (gunicorn master + workers), MiB."""
    return sum(rss_kib(p) for p in tree(pid, table)) / 1024


class Procs:
    """The processes of one bench run, by name."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.running[name] = proc
        return proc

    def pid(self, name: str) -> int:
        return self.running[name].pid

    def stop(self, name: str, timeout: float = 15.0) -> None:
        """SIGTERM the process and its descendants (rq work-horses have sessions of their own),
        wait, then SIGKILL what is left. Only PIDs this run started or their children."""
        proc = self.running.pop(name, None)
        if proc is None:
            return
        pids = [(pid, start_time(pid)) for pid in tree(proc.pid)]
        for pid, started in pids:
            signal_if_same(pid, started, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
        for pid, started in pids:
            signal_if_same(pid, started, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def stop_all(self) -> None:
        for name in list(self.running)[::-1]:
            self.stop(name)
