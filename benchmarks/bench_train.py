"""Training one arm at the paper's scale: wall time and peak memory of ``ovfdlr train``.

On the paper-scale synthetic cohort (1,098 vertebrae: 750 / 187 / 110 / 51) with the
radiomics (ct-vertebra.yaml, 1,130 features) and morphometry (17) tables, i.e. about 1,150
candidate features, the eight classifiers with their full search spaces, 5 patient-grouped
folds, SHAP for the chosen model:

    python benchmarks/bench_train.py --work /path/to/folder --jobs 2

The cohort and the feature tables are made first when missing (radiomics takes about 15-20
minutes on 2 cores; it is cached per case). The train command is timed as a whole process;
peak memory is the largest resident set of any process of the run (``getrusage`` children).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def ovfdlr(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "ovfdlr", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = args.work
    manifest = work / "cohort" / "manifest.csv"
    if not manifest.is_file():
        ovfdlr(
            "synth",
            "--out",
            str(work / "cohort"),
            "--paper-scale",
            "--seed",
            str(args.seed),
            "--jobs",
            str(args.jobs),
        )
    features = work / "features"
    for stage in ("morphometry", "radiomics"):
        if not (features / f"{stage}.parquet").is_file():
            ovfdlr(
                "extract",
                stage,
                str(manifest),
                "--out",
                str(features / f"{stage}.parquet"),
                "--jobs",
                str(args.jobs),
            )
    out = work / "arm"
    start = time.perf_counter()
    ovfdlr(
        "train",
        str(features / "radiomics.parquet"),
        str(features / "morphometry.parquet"),
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--arm",
        "radiomics",
        "--jobs",
        str(args.jobs),
        "--seed",
        str(args.seed),
    )
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    summary = json.loads((out / "arm.json").read_text())
    print(f"train command: {wall:.0f} s wall, peak RSS of any process {peak:.0f} MiB")
    timings = {k: round(v, 1) for k, v in summary["timings_s"].items()}
    print(f"timings inside (s): {json.dumps(timings)}")
    print(
        f"features in: {summary['n_input_features']}, selected: {len(summary['selected_features'])}"
    )
    print(
        f"chosen: {summary['chosen']}, macro AUC: "
        + ", ".join(f"{c} {v['auc']:.3f}" for c, v in summary["macro_auc"].items())
    )


if __name__ == "__main__":
    main()
