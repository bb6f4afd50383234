"""`python -m bench.validation`: a 100-report bucket validated report by report (`dlr.load`)
vs in one marshmallow pass (`dlr.load_all`), in one process, alternating 30 times so that the
machine's drift hits both alike; the best of each, per report, and their ratio."""

from __future__ import annotations

import timeit

from app import dlr
from bench.legs import sample_report


def main() -> None:
    bucket = [sample_report(n, "bucket") for n in range(100)]
    each, whole = [], []
    for _ in range(30):
        each.append(timeit.timeit(lambda: [dlr.load(item) for item in bucket], number=10))
        whole.append(timeit.timeit(lambda: dlr.load_all(bucket), number=10))
    per_report = {name: min(times) / (10 * len(bucket)) * 1e6 for name, times in
                  (("load", each), ("load_all", whole))}
    print(f"dlr.load each: {per_report['load']:.1f} us/report; dlr.load_all: {per_report['load_all']:.1f} "
          f"us/report; {per_report['load_all'] / per_report['load']:.2f}x")


if __name__ == "__main__":
    main()
