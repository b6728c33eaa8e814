"""Radiomics extraction speed: ovfdlr against a plain PyRadiomics loop, serial and parallel.

On the synthetic cohort with ct-vertebra.yaml, in one run:

1. a plain ``RadiomicsFeatureExtractor.execute`` loop over the first ``--n-timed`` cases;
2. ``extract_radiomics`` with ``jobs=1`` on the same cases (empty cache);
3. ``extract_radiomics`` with ``jobs=2`` on the same cases (empty cache);
4. the remaining cases of ``--n`` filled in with ``jobs=2``, then a fully cached rerun of all
   ``--n`` cases, in this process and as a whole ``ovfdlr extract radiomics`` process.

Peak memory: the largest resident set of the main process and of any worker process, sampled
every 50 ms with psutil. Prints one table and writes it as JSON with ``--json``.

    python benchmarks/bench_radiomics.py --n 200 --n-timed 40

``--checks-repeats R`` (R >= 5) also measures what the input checks (:mod:`ovfdlr.integrity`)
cost: the radiomics stage (``jobs=1``, no cache) on the ``--n-timed`` cases with and without
the checks, alternating (ABBA order) R times each, every checked run starting with no verdict
remembered; it reports the medians, their relative difference (target <= 2 %) and, more
precisely, the reading time per case with and without the checks. ``--checks-only`` skips
everything else.

    python benchmarks/bench_radiomics.py --n 12 --n-timed 12 --checks-repeats 5 --checks-only

``--engines`` compares the radiomics engines on the same ``--n-timed`` cases in one run:
PyRadiomics and the native engine, each in a fresh process on one core (SimpleITK limited to
one thread), steady state (one warm-up case first, so numba's compilation is not counted), for
``ct-vertebra.yaml`` and for its Original-only cut (same settings and classes, no filters); then
each engine through ``extract_radiomics --jobs 2`` (wall time per case). Peak memory is each
process's largest resident set; "start" is the same before the first case (libraries imported,
the native engine's compiled kernels loaded), so peak minus start is what the cases cost. The
native engine's compile time is measured separately: a fresh process with an empty numba
cache, then one with the cache filled (first case minus a steady-state case). ``--profile``
adds the native engine's profile (cProfile, one core), grouped by step. One more row: the
native engine with two threads in one process (its kernels release the GIL). ``--ibsi`` adds
the ibsi engine (MIRP) on the Original image with the same resampling and bin width (IBSI's 3-D
aggregations), to set against the Original-only rows. ``--engines-only`` skips everything else.

    python benchmarks/bench_radiomics.py --n 12 --n-timed 12 --engines --profile --engines-only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from ovfdlr import imaging, integrity
from ovfdlr.cohort import load_manifest
from ovfdlr.engines.pyradiomics import extractor as pyradiomics_extractor
from ovfdlr.radiomics import extract_radiomics, load_params
from ovfdlr.synthetic import generate_cohort


class PeakMemory:
    """Largest RSS of this process and of any of its descendants while the block runs."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.main = 0
        self.worker = 0

    def _poll(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.main = max(self.main, me.memory_info().rss)
                for child in me.children(recursive=True):
                    with contextlib.suppress(psutil.Error):  # a worker that just ended
                        self.worker = max(self.worker, child.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def timed(fn):
    with PeakMemory() as memory:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    return result, seconds, memory


def forget_checks() -> None:
    """Drop the verdicts the checks remember per file, so a run pays for them again."""
    integrity._STREAMS.clear()
    integrity._LABEL_MAPS.clear()


def input_checks_cost(cases, params, repeats: int) -> dict:
    """The radiomics stage with and without the input checks, alternating, and the reading
    time per case with and without them."""
    stage = {True: [], False: []}
    for repeat in range(repeats):
        order = (True, False) if repeat % 2 == 0 else (False, True)
        for checks in order:
            imaging._INPUT_CHECKS = checks
            forget_checks()
            start = time.perf_counter()
            result = extract_radiomics(
                cases, params, cache_dir=False, jobs=1, progress=False, engine="pyradiomics"
            )
            stage[checks].append(time.perf_counter() - start)
            assert result.failed == 0, result.errors
    imaging._INPUT_CHECKS = True
    reading = {True: [], False: []}
    for repeat in range(repeats):
        for checks in (True, False) if repeat % 2 == 0 else (False, True):
            imaging._INPUT_CHECKS = checks
            forget_checks()
            start = time.perf_counter()
            for case in cases.itertuples(index=False):
                imaging.read_image(case.image)
                imaging.read_label_map(case.mask)
            reading[checks].append((time.perf_counter() - start) / len(cases))
    imaging._INPUT_CHECKS = True
    on, off = float(np.median(stage[True])), float(np.median(stage[False]))
    read_on, read_off = float(np.median(reading[True])), float(np.median(reading[False]))
    return {
        "cases": len(cases),
        "repeats": repeats,
        "stage_seconds_with_checks": stage[True],
        "stage_seconds_without_checks": stage[False],
        "stage_median_with_checks": on,
        "stage_median_without_checks": off,
        "stage_relative_difference": on / off - 1,
        "read_seconds_per_case_with_checks": read_on,
        "read_seconds_per_case_without_checks": read_off,
        "checks_share_of_stage": (read_on - read_off) * len(cases) / off,
    }


def print_checks_cost(cost: dict) -> None:
    print(
        f"input checks, radiomics stage (jobs 1, no cache), {cost['cases']} cases, "
        f"{cost['repeats']} alternating repeats each:"
    )
    print(f"  median with checks    {cost['stage_median_with_checks']:9.2f} s")
    print(f"  median without checks {cost['stage_median_without_checks']:9.2f} s")
    print(f"  relative difference   {cost['stage_relative_difference']:+9.2%} (target <= +2 %)")
    print(
        f"  reading image + mask per case: {cost['read_seconds_per_case_with_checks'] * 1e3:.1f} "
        f"ms with checks, {cost['read_seconds_per_case_without_checks'] * 1e3:.1f} ms without: "
        f"{cost['checks_share_of_stage']:+.2%} of the stage"
    )


ORIGINAL_ONLY = "original"
IBSI_ORIGINAL = "ibsi-original"


def engine_params(which: str) -> dict:
    """``ct-vertebra.yaml``, its Original-only cut (``original``), or the same for the ibsi
    engine (``ibsi-original``: 1 mm B-spline resampling, 25 HU bins, all classes; the
    PyRadiomics-only settings left out, IBSI's 3-D aggregations)."""
    params = load_params()
    if which == ORIGINAL_ONLY:
        params = dict(params, imageType={"Original": {}})
    if which == IBSI_ORIGINAL:
        setting = params["setting"]
        params = {
            "imageType": {"Original": {}},
            "featureClass": params["featureClass"],
            "setting": {
                k: setting[k] for k in ("resampledPixelSpacing", "interpolator", "binWidth")
            },
        }
    return params


def engine_worker(engine: str, manifest: Path, n: int, which: str, threads: int = 1) -> dict:
    """In this (fresh) process: one warm-up case, then the other cases one by one, on one core
    (``threads`` > 1: the native engine's threads and SimpleITK's)."""
    import resource

    import SimpleITK as sitk

    from ovfdlr.radiomics import extract, make_engine

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    cases = load_manifest(manifest).iloc[:n]
    params = engine_params(which)
    start = time.perf_counter()
    options = {"threads": threads} if engine == "native" else {}
    runner = make_engine(engine, params, **options)
    if engine == "native":  # load the compiled kernels now, to tell start-up from work
        from ovfdlr.engines.native import warm_up

        warm_up()
    started_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    first = cases.iloc[0]
    extract(first["image"], first["mask"], params, int(first["mask_label"]), engine=runner)
    first_seconds = time.perf_counter() - start
    seconds = []
    for case in cases.iloc[1:].itertuples(index=False):
        start = time.perf_counter()
        extract(case.image, case.mask, params, int(case.mask_label), engine=runner)
        seconds.append(time.perf_counter() - start)
    return {
        "first_case_seconds": first_seconds,
        "per_case_seconds": seconds,
        "median_seconds": float(np.median(seconds)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "start_rss_mb": started_mb,
    }


def run_worker(
    engine: str, manifest: Path, n: int, which: str, env: dict | None = None, threads: int = 1
) -> dict:
    command = [
        sys.executable, __file__, "--engine-worker", engine, "--manifest", str(manifest),
        "--n-timed", str(n), "--which", which, "--threads", str(threads),
    ]  # fmt: skip
    done = subprocess.run(
        command, check=True, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare_engines(cohort_dir: Path, cases, profile: bool, ibsi: bool = False) -> dict:
    """The engine comparison of ``--engines`` (see the module docstring)."""
    manifest = cohort_dir / "manifest.csv"
    n = len(cases)
    report: dict = {"cores": os.cpu_count(), "cases": n}
    with tempfile.TemporaryDirectory() as numba_cache:
        cold = run_worker("native", manifest, n, "full", {"NUMBA_CACHE_DIR": numba_cache})
        warm = run_worker("native", manifest, n, "full", {"NUMBA_CACHE_DIR": numba_cache})
    report["native compile"] = {
        "first case, empty numba cache (s)": cold["first_case_seconds"],
        "first case, numba cache filled (s)": warm["first_case_seconds"],
        "steady-state case (s)": warm["median_seconds"],
        "compile time (s)": cold["first_case_seconds"] - warm["first_case_seconds"],
    }
    for which in ("full", ORIGINAL_ONLY):
        for engine in ("pyradiomics", "native"):
            report[f"{engine} {which} 1 core"] = run_worker(engine, manifest, n, which)
    report["native full 2 threads"] = run_worker("native", manifest, n, "full", threads=2)
    if ibsi:
        report[f"ibsi {IBSI_ORIGINAL} 1 core"] = run_worker("ibsi", manifest, n, IBSI_ORIGINAL)
    for engine in ("pyradiomics", "native"):
        params = engine_params("full")
        result, seconds, memory = timed(
            lambda engine=engine, params=params: extract_radiomics(
                cases, params, cache_dir=False, jobs=2, progress=False, engine=engine
            )
        )
        assert result.failed == 0, result.errors
        report[f"{engine} full --jobs 2"] = {
            "seconds": seconds,
            "per_case_seconds": seconds / n,
            "peak_rss_mb": max(memory.main, memory.worker) / 2**20,
        }
    if profile:
        report["native profile"] = native_profile(cases)
    return report


# where the native engine's time goes, by the function that does the work
PROFILE_GROUPS = {
    "reading image + mask": ("imaging.py",),
    "resampling": ("imageops.py:resample",),
    "LoG": ("imageops.py:_log_images",),
    "wavelet": ("imageops.py:_wavelet_images",),
    "discretisation": ("imageops.py:discretize",),
    "shape": ("shape.py",),
    "first order": ("firstorder.py",),
    "GLCM + GLDM + NGTDM": ("neighbourhood.py", "glcm.py", "gldm.py", "ngtdm.py"),
    "GLRLM + GLSZM": ("runs_zones.py", "glrlm.py", "glszm.py"),
}


def native_profile(cases) -> dict:
    """cProfile of the native engine on one core over the cases (after a warm-up case):
    seconds per case of each group's outermost calls."""
    import cProfile
    import pstats

    import SimpleITK as sitk

    from ovfdlr.radiomics import extract, make_engine

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    params = engine_params("full")
    runner = make_engine("native", params)
    first = cases.iloc[0]
    extract(first["image"], first["mask"], params, int(first["mask_label"]), engine=runner)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    for case in cases.itertuples(index=False):
        image = imaging.read_image(case.image)
        mask = imaging.read_label_map(case.mask)
        runner.extract(image, mask, int(case.mask_label))
    profiler.disable()
    total = (time.perf_counter() - start) / len(cases)
    stats = pstats.Stats(profiler).stats
    shares: dict[str, float] = {}
    for group, needles in PROFILE_GROUPS.items():
        seconds = 0.0
        for (filename, _, function), (_, _, _, cumulative, callers) in stats.items():
            where = f"{Path(filename).name}:{function}"
            if not any(where.startswith(n) or Path(filename).name == n for n in needles):
                continue
            # outermost calls only: callers outside the group
            inner = any(
                any(
                    f"{Path(c[0]).name}:{c[2]}".startswith(n) or Path(c[0]).name == n
                    for n in needles
                )
                for c in callers
            )
            if not inner:
                seconds += cumulative
        shares[group] = seconds / len(cases)
    shares["other"] = total - sum(shares.values())
    shares["total"] = total
    return shares


def print_engines(report: dict) -> None:
    n = report["cases"]
    print(f"\nradiomics engines, {n} synthetic cases, cores: {report['cores']}")
    print(f"{'run':40s} {'s/case':>8s} {'peak MB':>8s} {'start MB':>8s}")
    for key, row in report.items():
        if key.endswith(("1 core", "--jobs 2", "2 threads")):
            seconds = row.get("median_seconds", row.get("per_case_seconds"))
            start = row.get("start_rss_mb", float("nan"))
            print(f"{key:40s} {seconds:8.3f} {row['peak_rss_mb']:8.0f} {start:8.0f}")
    for which in ("full", ORIGINAL_ONLY):
        ratio = (
            report[f"pyradiomics {which} 1 core"]["median_seconds"]
            / report[f"native {which} 1 core"]["median_seconds"]
        )
        target = 3 if which == "full" else 5
        print(f"speed-up, {which}, one core: {ratio:.2f}x (target >= {target}x)")
    ratio = (
        report["pyradiomics full --jobs 2"]["seconds"] / report["native full --jobs 2"]["seconds"]
    )
    print(f"speed-up, full, --jobs 2: {ratio:.2f}x")
    for key, value in report["native compile"].items():
        print(f"native compile: {key:36s} {value:8.3f}")
    if "native profile" in report:
        print("native profile (s/case, one core):")
        for key, value in report["native profile"].items():
            print(f"  {key:24s} {value:8.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="cases for the cached rerun")
    parser.add_argument("--n-timed", type=int, default=40, help="cases for the timed runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="folder (default: temporary)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--checks-repeats", type=int, default=0, help="measure the input checks (>= 5 repeats)"
    )
    parser.add_argument("--checks-only", action="store_true", help="only the input checks")
    parser.add_argument("--engines", action="store_true", help="compare the radiomics engines")
    parser.add_argument("--engines-only", action="store_true", help="only the engines")
    parser.add_argument("--profile", action="store_true", help="the native engine's profile")
    parser.add_argument("--ibsi", action="store_true", help="also the ibsi engine (MIRP)")
    parser.add_argument("--engine-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--manifest", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--which", default="full", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine_worker:
        row = engine_worker(
            args.engine_worker, args.manifest, args.n_timed, args.which, args.threads
        )
        print(json.dumps(row))
        return
    if args.checks_only and args.checks_repeats < 5:
        parser.error("--checks-only needs --checks-repeats 5 or more")

    work = args.work or Path(tempfile.mkdtemp(prefix="ovfdlr-bench-radiomics-"))
    cohort_dir = work / "cohort"
    if not (cohort_dir / "manifest.csv").is_file():
        generate_cohort(cohort_dir, args.n, seed=args.seed, jobs=0, progress=False)
    cohort = load_manifest(cohort_dir / "manifest.csv")
    timed_cases = cohort.iloc[: args.n_timed]
    params = load_params()
    rows = {}
    if args.engines or args.engines_only:
        engines = compare_engines(cohort_dir, timed_cases, args.profile, args.ibsi)
        print_engines(engines)
        if args.engines_only:
            if args.json:
                args.json.write_text(json.dumps({"engines": engines}, indent=2))
            return
    if args.checks_repeats:
        cost = input_checks_cost(timed_cases, params, args.checks_repeats)
        print_checks_cost(cost)
        if args.checks_only:
            if args.json:
                args.json.write_text(json.dumps({"input checks": cost}, indent=2))
            return

    def plain_loop():
        extractor = pyradiomics_extractor(params)
        for case in timed_cases.itertuples(index=False):
            extractor.execute(case.image, case.mask, label=int(case.mask_label))

    _, seconds, memory = timed(plain_loop)
    rows["plain PyRadiomics loop"] = (seconds, len(timed_cases), memory)

    for jobs in (1, 2):
        cache = work / f"cache-jobs{jobs}"
        shutil.rmtree(cache, ignore_errors=True)
        result, seconds, memory = timed(
            lambda jobs=jobs, cache=cache: extract_radiomics(
                timed_cases, params, cache_dir=cache, jobs=jobs, progress=False
            )
        )
        assert result.failed == 0, result.errors
        rows[f"ovfdlr --jobs {jobs}"] = (seconds, len(timed_cases), memory)

    cache = work / "cache-jobs2"
    extract_radiomics(cohort, params, cache_dir=cache, jobs=2, progress=False)  # fill the rest
    result, seconds, memory = timed(
        lambda: extract_radiomics(cohort, params, cache_dir=cache, jobs=2, progress=False)
    )
    assert result.cached == len(cohort) and result.computed == 0
    rows[f"cached rerun, {len(cohort)} cases (in process)"] = (seconds, len(cohort), memory)

    command = [
        sys.executable, "-m", "ovfdlr", "extract", "radiomics", str(cohort_dir / "manifest.csv"),
        "--out", str(work / "radiomics.parquet"), "--cache", str(cache), "--jobs", "2",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    rows[f"cached rerun, {len(cohort)} cases (whole process)"] = (
        time.perf_counter() - start,
        len(cohort),
        None,
    )

    plain = rows["plain PyRadiomics loop"][0] / len(timed_cases)
    one = rows["ovfdlr --jobs 1"][0] / len(timed_cases)
    two = rows["ovfdlr --jobs 2"][0] / len(timed_cases)
    print(f"cores: {os.cpu_count()}, cases timed: {len(timed_cases)}, cohort: {len(cohort)}")
    print(f"{'run':48s} {'seconds':>9s} {'s/case':>8s} {'main MB':>8s} {'worker MB':>9s}")
    report = {}
    for name, (seconds, n, memory) in rows.items():
        main_mb = memory.main / 2**20 if memory else float("nan")
        worker_mb = memory.worker / 2**20 if memory and memory.worker else float("nan")
        print(f"{name:48s} {seconds:9.2f} {seconds / n:8.3f} {main_mb:8.0f} {worker_mb:9.0f}")
        report[name] = {"seconds": seconds, "cases": n, "main_mb": main_mb, "worker_mb": worker_mb}
    if args.checks_repeats:
        report["input checks"] = cost
    print(f"ovfdlr --jobs 1 / plain loop: {one / plain:.3f} (target <= 1.05)")
    print(f"speed-up --jobs 2 over --jobs 1: {one / two:.2f}x (target >= 1.8)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
