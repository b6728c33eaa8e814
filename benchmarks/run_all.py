"""Run every benchmark in turn at its documented size (``make bench``); about an hour on 2 cores.

    python benchmarks/run_all.py [--work FOLDER] [--only NAME ...]

Each benchmark prints its own table; ``--work`` (default ``bench-work/``) keeps the cohorts and
caches the longer ones build, so a second call skips that preparation.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks(work: Path) -> dict[str, list[str]]:
    return {
        "synth": ["bench_synth.py", "--n", "50", "--jobs", "1"],
        "radiomics": [
            "bench_radiomics.py",
            "--n",
            "200",
            "--n-timed",
            "40",
            "--work",
            str(work / "radiomics"),
        ],
        "deep": ["bench_deep.py", "--n", "64", "--repeats", "5", "--work", str(work / "deep")],
        "delong": ["bench_delong.py"],
        "train": ["bench_train.py", "--work", str(work / "paper")],
        "run": ["bench_run.py", "--work", str(work / "demo")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-work"))
    parser.add_argument("--only", nargs="*", default=None, help="names to run (default: all)")
    args = parser.parse_args()
    todo = benchmarks(args.work.resolve())
    unknown = set(args.only or ()) - set(todo)
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(todo)}")
    failed = []
    for name, (script, *rest) in todo.items():
        if args.only and name not in args.only:
            continue
        print(f"\n=== {name}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *rest]).returncode != 0:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
