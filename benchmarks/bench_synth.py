"""Benchmark the synthetic cohort generator: seconds per case and per case per core.

    python benchmarks/bench_synth.py --n 50 --jobs 1

Times :func:`ovfdlr.synthetic.generate_cohort` end to end (population, rendering, writing the
NIfTI files, manifest and truth) with ``time.perf_counter`` and reports the peak resident memory
of this process and of its worker processes (``resource.getrusage``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from ovfdlr.parallel import resolve_jobs
from ovfdlr.synthetic import generate_cohort


def _peak_rss_mib(who: int) -> float:
    # ru_maxrss is in KiB on Linux and in bytes on macOS
    scale = 1.0 / 1024.0 if sys.platform != "darwin" else 1.0 / 1024.0**2
    return resource.getrusage(who).ru_maxrss * scale


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="vertebrae to generate (default 50)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: temp)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args(argv)

    jobs = resolve_jobs(args.jobs)
    with tempfile.TemporaryDirectory(prefix="ovfdlr-bench-") as tmp:
        out = args.out if args.out is not None else Path(tmp) / "cohort"
        start = time.perf_counter()
        manifest = generate_cohort(out, n=args.n, seed=args.seed, jobs=jobs, progress=False)
        elapsed = time.perf_counter() - start
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    n = len(manifest)
    result = {
        "n": n,
        "jobs": jobs,
        "seconds": round(elapsed, 3),
        "seconds_per_case": round(elapsed / n, 4),
        "seconds_per_case_per_core": round(elapsed * jobs / n, 4),
        "peak_rss_mib": round(_peak_rss_mib(resource.RUSAGE_SELF), 1),
        "peak_rss_children_mib": round(_peak_rss_mib(resource.RUSAGE_CHILDREN), 1),
        "output_mib": round(size / 1024.0**2, 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"generated {n} cases with {jobs} job(s) in {elapsed:.2f} s")
        print(f"  {result['seconds_per_case']:.3f} s per case")
        print(f"  {result['seconds_per_case_per_core']:.3f} s per case per core")
        workers = result["peak_rss_children_mib"]
        print(
            f"  peak RSS {result['peak_rss_mib']:.0f} MiB"
            + (f" (finished workers {workers:.0f} MiB)" if workers > 0 else "")
            + f", output {result['output_mib']:.1f} MiB"
        )
    return result


if __name__ == "__main__":
    main()
