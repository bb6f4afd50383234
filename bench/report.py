"""`python -m bench.report [var/bench/results.json]`: a results file as the markdown tables of
docs/BENCHMARKS.md (machine, load, one row per bar), so the doc quotes a run verbatim."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.run import OUT


def machine(results: dict[str, Any]) -> str:
    m = results["machine"]
    load = results["load_at_start"]
    end = results["load_at_end"]
    rows = [
        ("cores (nproc)", m["nproc"]), ("CPU", m["cpu"]), ("memory", f"{m['memory_gib']} GiB"),
        ("kernel", m["kernel"]), ("Python", m["python"]), ("redis-server", m["redis_server"]),
        ("gunicorn version", m["gunicorn"]), ("Flask / Werkzeug", f"{m['flask']} / {m['werkzeug']}"),
        ("rq", m["rq"]), ("redis-py / hiredis", f"{m['redis']} / {m['hiredis']}"), ("urllib3", m["urllib3"]),
        ("marshmallow", m["marshmallow"]), ("wrk", m["wrk"]),
        ("gunicorn", f"WEB_CONCURRENCY={m['web_concurrency']} x WEB_THREADS={m['web_threads']} (gthread)"),
        ("wrk options", f"-t1 -c{m['wrk_connections']}"),
        ("load average at start (1/5/15 min)", " / ".join(f"{x:.2f}" for x in load)),
        ("load average at end", " / ".join(f"{x:.2f}" for x in end)),
        ("run time", f"{results['seconds']:.0f} s"),
    ]
    by_section = results.get("load_by_section") or {}
    for section, values in by_section.items():
        rows.append((f"load average when `{section}` started", " / ".join(f"{x:.2f}" for x in values)))
    lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def bars(results: dict[str, Any]) -> str:
    lines = ["| bar | figure | baseline | threshold | result |", "|---|---|---|---|---|"]
    for bar in results["bars"]:
        verdict = "info" if bar["extra"] else ("**PASS**" if bar["passed"] else "**FAIL**")
        figure = f"{bar['figure']:,.2f} {bar['unit']}"
        lines.append(f"| {bar['title']} | {figure} | {bar['baseline'] or '-'} | {bar['bar']} | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else OUT / "results.json"
    results = json.loads(path.read_text())
    print(f"Run `{results['plan']['name']}` ({path.name}):\n")
    print(machine(results), "\n")
    print(bars(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
