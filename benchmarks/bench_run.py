"""The main job end to end: ``ovfdlr demo`` per stage, then ``ovfdlr predict`` for one case.

1. ``ovfdlr demo --out WORK/run`` (default size, ``--paper-scale`` or ``--n N``; ``--no-nested-cv``
   switches nested cross-validation off) as one whole process with an empty per-case cache
   (``OVFDLR_CACHE=WORK/cache``): wall time, peak memory in all, and each stage's seconds and
   peak memory (the synthetic cohort's seconds from the command's output, the others from
   ``run.json``; each stage's interval from ``run.log``'s timestamps).
   With ``--cohort DIR`` (a cohort ``ovfdlr synth`` made) the demo's config runs on it with
   ``ovfdlr run`` instead: the same work without the synthesis stage, as a user's own run.
2. ``ovfdlr predict`` on each bundle of that run, for one vertebra, ``--repeats`` times, each
   as a fresh process with an empty cache (so the features are computed, as for a new
   patient): median wall time and peak memory, model loading included (``--repeats 0``: none).

Peak memory is given two ways, both sampled every 50 ms with psutil over the command's whole
process tree (worker and background processes included): the largest single process, and the
largest sum over the tree at one moment (an upper bound: pages shared between processes are
counted in each).

    python benchmarks/bench_run.py --work /tmp/bench-demo
    python benchmarks/bench_run.py --work /tmp/bench-paper --paper-scale --jobs 2 --no-nested-cv
    ovfdlr synth --paper-scale --out /tmp/paper-cohort
    python benchmarks/bench_run.py --work /tmp/bench-paper --cohort /tmp/paper-cohort --jobs 2 \
        --no-nested-cv

Targets on 2 cores: demo <= 5 min; paper scale without nested cross-validation <= 10 min
without the synthesis (stretch: with it, and 5 min), the deep arm's training stage <= 3 min;
peak RSS <= 4 GB; predict <= 5 s for one case.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import psutil

OVFDLR = [sys.executable, "-m", "ovfdlr"]
MIB = 1024 * 1024


def run_sampled(command: list[str], env: dict | None = None) -> dict:
    """Run a command; its wall time, exit code, output, and the memory of its process tree
    (``samples``: wall-clock time, largest process, sum over the tree, in bytes).

    Its output goes to temporary files, not pipes: a pipe nobody reads while the command runs
    fills up (the progress bars alone can) and stalls it.
    """
    samples = []
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr, text=True)
        root = psutil.Process(process.pid)
        while process.poll() is None:
            sizes = []
            with contextlib.suppress(psutil.Error):  # the command ended meanwhile
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):  # ended between listing and reading
                        sizes.append(p.memory_info().rss)
            if sizes:
                samples.append((time.time(), max(sizes), sum(sizes)))
            time.sleep(0.05)
        wall = time.perf_counter() - start
        stdout.seek(0)
        stderr.seek(0)
        return {
            "wall_s": wall,
            "code": process.returncode,
            "stdout": stdout.read(),
            "stderr": stderr.read(),
            "peak_process_mib": max((s[1] for s in samples), default=0) / MIB,
            "peak_tree_mib": max((s[2] for s in samples), default=0) / MIB,
            "samples": samples,
        }


STAGE_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO ovfdlr\.run: stage (\S+): "
    r"(computing|computed|cached)"
)


def stage_intervals(run_log: Path) -> dict[str, tuple[float, float]]:
    """Each computed stage's (start, end) wall-clock times from ``run.log``."""
    starts, intervals = {}, {}
    for line in run_log.read_text().splitlines():
        found = STAGE_LINE.match(line)
        if not found:
            continue
        stamp = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        name, what = found.group(2), found.group(3)
        if what == "computing":
            starts[name] = stamp
        elif what == "computed" and name in starts:
            intervals[name] = (starts[name], stamp)
    return intervals


def stage_peaks(samples: list, intervals: dict) -> dict[str, float]:
    """The largest single process (MiB) sampled during each stage."""
    return {
        name: max((s[1] for s in samples if start <= s[0] <= end), default=0) / MIB
        for name, (start, end) in intervals.items()
    }


def run_demo(work: Path, size: list[str], jobs: int, nested_cv: bool, cohort: Path | None) -> dict:
    out, cache = work / "run", work / "cache"
    for folder in (out, cache):
        shutil.rmtree(folder, ignore_errors=True)
    env = {**os.environ, "OVFDLR_CACHE": str(cache)}
    nested = [] if nested_cv else ["--no-nested-cv"]
    if cohort is None:
        command = [*OVFDLR, "demo", "--out", str(out), "--jobs", str(jobs), *size, *nested]
    else:  # the demo's config on a cohort made beforehand: no synthesis stage
        from ovfdlr.demo import write_demo_config

        config = write_demo_config(
            work / "config", cohort / "manifest.csv", jobs=jobs, nested_cv=nested_cv
        )
        command = [*OVFDLR, "run", str(config), "--out", str(out)]
    result = run_sampled(command, env)
    if result["code"] != 0:
        sys.exit(f"{' '.join(command)} failed ({result['code']}):\n{result['stderr'][-3000:]}")
    stages = {}
    found = re.search(r"synthetic cohort: ([0-9.]+) s", result["stdout"])
    if found:
        stages["synthetic cohort"] = float(found.group(1))
    for stage in json.loads((out / "run.json").read_text())["stages"]:
        stages[stage["name"]] = stage["seconds"]
    return {
        "wall_s": result["wall_s"],
        "peak_process_mib": result["peak_process_mib"],
        "peak_tree_mib": result["peak_tree_mib"],
        "stages": stages,
        "stage_peak_mib": stage_peaks(result["samples"], stage_intervals(out / "run.log")),
        "run": out,
    }


def time_predict(run: Path, work: Path, repeats: int) -> list[dict]:
    manifest = run / "cohort" / "manifest.csv"
    case = pd.read_csv(manifest).iloc[0]
    image, mask = (str(manifest.parent / case[k]) for k in ("image", "mask"))
    rows = []
    for bundle in sorted((run / "bundles").iterdir()):
        walls, peaks, trees = [], [], []
        for i in range(repeats + 1):  # the first run warms the file system cache, not counted
            cache = work / "predict-cache"
            shutil.rmtree(cache, ignore_errors=True)
            command = [
                *OVFDLR,
                "predict",
                str(bundle),
                "--image",
                image,
                "--mask",
                mask,
                "--mask-label",
                str(case["mask_label"]),
                "--out",
                str(work / "predictions"),
                "--cache",
                str(cache),
            ]
            result = run_sampled(command)
            if result["code"] != 0:
                sys.exit(f"ovfdlr predict {bundle} failed:\n{result['stderr'][-3000:]}")
            if i:
                walls.append(result["wall_s"])
                peaks.append(result["peak_process_mib"])
                trees.append(result["peak_tree_mib"])
        rows.append(
            {
                "bundle": bundle.name,
                "wall_median_s": statistics.median(walls),
                "wall_min_s": min(walls),
                "wall_max_s": max(walls),
                "peak_process_mib": max(peaks),
                "peak_tree_mib": max(trees),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the run")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--paper-scale", action="store_true")
    size.add_argument("--n", type=int, default=None)
    size.add_argument(
        "--cohort", type=Path, default=None, help="a cohort made by ovfdlr synth (no synthesis)"
    )
    parser.add_argument("--jobs", type=int, default=0, help="worker processes (0: all cores)")
    parser.add_argument(
        "--no-nested-cv", dest="nested_cv", action="store_false", help="nested CV off"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed predict runs per bundle")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    chosen = ["--paper-scale"] if args.paper_scale else (["--n", str(args.n)] if args.n else [])

    demo = run_demo(args.work, chosen, args.jobs, args.nested_cv, args.cohort)
    what = (
        f"ovfdlr run (demo config) on {args.cohort}"
        if args.cohort
        else (f"ovfdlr demo {' '.join(chosen) or '(default size)'}")
    )
    nested = "nested CV on" if args.nested_cv else "nested CV off"
    print(f"cores: {os.cpu_count()}; {what}; --jobs {args.jobs}; {nested}")
    print(
        f"  wall {demo['wall_s']:.1f} s; peak resident memory {demo['peak_process_mib']:.0f} MiB "
        f"(largest process), {demo['peak_tree_mib']:.0f} MiB (summed over its processes)"
    )
    print(f"  {'stage':<20} {'seconds':>8} {'peak MiB':>9}")
    for name, seconds in demo["stages"].items():
        peak = demo["stage_peak_mib"].get(name)
        print(f"  {name:<20} {seconds:8.1f} {'' if peak is None else f'{peak:9.0f}'}")
    predict = time_predict(demo["run"], args.work, args.repeats) if args.repeats else []
    if predict:
        print(f"ovfdlr predict, one case, empty cache, median of {args.repeats}:")
    for row in predict:
        print(
            f"  {row['bundle']:<12} {row['wall_median_s']:.2f} s "
            f"(min {row['wall_min_s']:.2f}, max {row['wall_max_s']:.2f}), "
            f"peak {row['peak_process_mib']:.0f} MiB largest process, "
            f"{row['peak_tree_mib']:.0f} MiB summed"
        )
    if args.json:
        demo["run"] = str(demo["run"])
        args.json.write_text(json.dumps({"demo": demo, "predict": predict}, indent=2))


if __name__ == "__main__":
    main()
