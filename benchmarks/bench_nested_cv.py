"""The extra cost of nested cross-validation: ``nested_cv`` against ``fit_arm``, jobs 1 and 2.

Two sizes, each trained as a run trains an arm (the eight classifiers with their full search
spaces, 5 patient-grouped folds, the default selection):

- ``demo``: the demo's radiomics arm on its cohort (the synthetic cohort of ``ovfdlr demo``,
  100 vertebrae, seed 0; radiomics with ct-vertebra.yaml and morphometry, about 1,150
  features; 68 training vertebrae). The cohort and its feature tables are made under
  ``--work`` with the command line when missing (a few minutes; cached per case).
- ``paper``: a synthetic feature table of the paper's size (``--paper-train`` training
  vertebrae, 450 by default, and ``--paper-features`` columns, 3,200 by default: radiomics,
  morphometry and 2,048 deep features), correlated in blocks as radiomics features are, with a
  weak class signal in a few blocks; patients of one or two vertebrae.

For each size and each ``--jobs`` value: the median wall time (``time.perf_counter``) of
:func:`ovfdlr.training.fit_arm` (what a run does without nested CV) and of
:func:`ovfdlr.training.nested_cv` (what nested CV adds) over ``--repeats`` runs, and their
ratio. Prints a table and writes JSON (``--out``, default ``<work>/bench_nested_cv.json``)::

    python benchmarks/bench_nested_cv.py --work bench-work/nested [--sizes demo paper]
        [--jobs 1 2] [--repeats 3] [--paper-repeats 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ovfdlr.arm import read_features
from ovfdlr.cohort import load_manifest
from ovfdlr.parallel import available_cores, shutdown_workers
from ovfdlr.training import TrainSettings, fit_arm, nested_cv


def ovfdlr(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "ovfdlr", *args], check=True)


def demo_inputs(work: Path, jobs: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The demo cohort's radiomics + morphometry table and its cohort (made when missing)."""
    manifest = work / "demo" / "cohort" / "manifest.csv"
    if not manifest.is_file():
        ovfdlr("synth", "--out", str(manifest.parent), "--n", "100", "--seed", "0")
    tables = []
    for stage in ("radiomics", "morphometry"):
        table = work / "demo" / "features" / f"{stage}.parquet"
        if not table.is_file():
            ovfdlr("extract", stage, str(manifest), "--out", str(table), "--jobs", str(jobs))
        tables.append(table)
    return read_features(tables), load_manifest(manifest)


def paper_inputs(n_train: int, n_features: int, seed: int = 0):
    """A feature table of the paper's size: blocks of correlated features (radiomics-like),
    a weak class signal in a few blocks, every other cohort a quarter of the training size."""
    rng = np.random.default_rng(seed)
    sizes = {"train": n_train, "internal": n_train // 4, "external": n_train // 4}
    n = sum(sizes.values())
    y = rng.choice(3, n, p=[0.4, 0.3, 0.3])
    n_blocks = 64
    latent = rng.normal(size=(n, n_blocks))
    latent[:, :4] += np.array([0.6, -0.5, 0.4, 0.3]) * (y[:, None] - 1)
    block = rng.integers(0, n_blocks, n_features)
    x = latent[:, block] * rng.uniform(0.5, 1.5, n_features) + rng.normal(size=(n, n_features))
    ids = [f"c{i:05d}" for i in range(n)]
    features = pd.DataFrame(x, index=pd.Index(ids, name="case_id"))
    features.columns = [f"f{j:04d}" for j in range(n_features)]
    cohorts = np.repeat(list(sizes), list(sizes.values()))
    # patients of one or two vertebrae, never across cohorts
    patients, p = [], 0
    for i in range(n):
        if i and cohorts[i] == cohorts[i - 1] and rng.random() < 0.4 and patients[-1] == p:
            patients.append(p)
        else:
            p += 1
            patients.append(p)
    cohort = pd.DataFrame(
        {
            "patient_id": [f"P{v}" for v in patients],
            "label": pd.array(y, dtype="Int64"),
            "cohort": cohorts,
            "centre": "A",
        },
        index=ids,
    )
    return features, cohort


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(name: str, features, cohort, jobs_list, repeats: int) -> list[dict]:
    rows = []
    training = cohort[(cohort["cohort"] == "train") & cohort["label"].notna()]
    for jobs in jobs_list:
        settings = TrainSettings(jobs=jobs)
        fit_s = median_seconds(
            lambda s=settings: fit_arm(features, cohort, name, s, progress=False), repeats
        )
        nested_s = median_seconds(
            lambda s=settings: nested_cv(features, cohort, name, s, progress=False), repeats
        )
        shutdown_workers()
        rows.append(
            {
                "size": name,
                "training_cases": len(training),
                "features": features.shape[1],
                "jobs": jobs,
                "repeats": repeats,
                "fit_arm_s": round(fit_s, 2),
                "nested_cv_s": round(nested_s, 2),
                "nested_over_fit": round(nested_s / fit_s, 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-work/nested"))
    parser.add_argument("--sizes", nargs="+", default=["demo", "paper"], choices=["demo", "paper"])
    parser.add_argument("--jobs", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs at demo size")
    parser.add_argument("--paper-repeats", type=int, default=1, help="timed runs at paper size")
    parser.add_argument("--paper-train", type=int, default=450)
    parser.add_argument("--paper-features", type=int, default=3200)
    parser.add_argument("--out", type=Path, default=None, help="JSON file of the results")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    if "demo" in args.sizes:
        features, cohort = demo_inputs(args.work, max(args.jobs))
        rows += bench("demo", features, cohort, args.jobs, args.repeats)
    if "paper" in args.sizes:
        features, cohort = paper_inputs(args.paper_train, args.paper_features)
        rows += bench("paper", features, cohort, args.jobs, args.paper_repeats)
    table = pd.DataFrame(rows)
    print(f"\nnested cross-validation against fit_arm ({available_cores()} cores), medians:")
    print(table.to_string(index=False))
    out = args.out or args.work / "bench_nested_cv.json"
    out.write_text(
        json.dumps(
            {
                "machine": {"cores": available_cores(), "python": platform.python_version()},
                "results": rows,
            },
            indent=2,
        )
    )
    print(f"written: {out}")
    return rows


if __name__ == "__main__":
    main()
