"""Benchmark the fast DeLong implementation: AUC + variance, and a paired test, on 10^6 cases.

    python benchmarks/bench_delong.py [--n 1000000] [--repeats 5] [--json]

Times :func:`ovfdlr.stats.delong_covariance` on one score (the AUC and its DeLong variance) and
:func:`ovfdlr.stats.delong_test` on two correlated scores (paired test) with
``time.perf_counter``; reports the median of ``--repeats`` runs, and for scale scikit-learn's
``roc_auc_score`` (AUC only, no variance) on the same data. The scores are rounded to three
decimals, so the data hold many ties. Target: under 1 s for each DeLong figure at 10^6 cases.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from ovfdlr.stats import delong_covariance, delong_test


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="cases (default 10^6)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    y = rng.random(args.n) < 0.3
    a = np.round(rng.normal(y * 1.0, 1.0), 3)
    b = np.round(0.6 * a + rng.normal(y * 0.8, 1.0), 3)

    result = {
        "n": args.n,
        "cases": int(y.sum()),
        "repeats": args.repeats,
        "auc_variance_s": _median_seconds(lambda: delong_covariance(y, a), args.repeats),
        "paired_test_s": _median_seconds(lambda: delong_test(y, a, b), args.repeats),
        "sklearn_auc_only_s": _median_seconds(lambda: roc_auc_score(y, a), args.repeats),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"DeLong on {args.n:,} cases ({result['cases']:,} positive), median of {args.repeats}"
        )
        print(f"  AUC + DeLong variance (1 score): {result['auc_variance_s']:.3f} s")
        print(f"  paired DeLong test (2 scores):   {result['paired_test_s']:.3f} s")
        print(
            f"  scikit-learn roc_auc_score, AUC only (reference): "
            f"{result['sklearn_auc_only_s']:.3f} s"
        )
    return result


if __name__ == "__main__":
    main()
