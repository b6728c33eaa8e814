"""Type-I error and coverage of the macro-AUC test and CI, clustered and unclustered.

Seeded simulations at the pipeline's cohort size (n = 300; generators in tests/macro_nulls.py):
the rejection rate at alpha = 0.05 and 0.01 of the macro DeLong test with the unconditional
(default) and the conditional variance, and of the patient bootstrap, under three nulls; the
coverage of the 95 % macro CI; the clustered DeLong test on two vertebrae per patient. Prints a
table and writes benchmarks/results/macro_size.json.

    python benchmarks/bench_macro_size.py [--pairs 5000] [--boot-pairs 500]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.macro_nulls import MIRROR, SAME, draw, true_macro, unequal_design
from tests.test_stats_macro_size import clustered_cohort

from ovfdlr.stats import bootstrap_macro_test, delong_test, macro_auc_test, one_vs_rest

DESIGNS = {"same-process": SAME, "mirror-image": MIRROR, "unequal-shares": unequal_design()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--boot-pairs", type=int, default=500)
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    rows = []
    for i, (name, design) in enumerate(DESIGNS.items()):
        rng = np.random.default_rng(100 + i)
        start = time.perf_counter()
        pu, pc = [], []
        for _ in range(args.pairs):
            y, a, b = draw(rng, args.n, design)
            pu.append(macro_auc_test(y, a, b).p_value)
            pc.append(macro_auc_test(y, a, b, variance="conditional").p_value)
        pb = []
        for _ in range(args.boot_pairs):
            y, a, b = draw(rng, args.n, design)
            pb.append(bootstrap_macro_test(y, a, b, n_boot=1000, seed=len(pb)).p_value)
        pu, pc, pb = map(np.asarray, (pu, pc, pb))
        rows.append(
            {
                "null": name,
                "pairs": args.pairs,
                "unconditional_0.05": float(np.mean(pu < 0.05)),
                "unconditional_0.01": float(np.mean(pu < 0.01)),
                "conditional_0.05": float(np.mean(pc < 0.05)),
                "conditional_0.01": float(np.mean(pc < 0.01)),
                "bootstrap_pairs": args.boot_pairs,
                "bootstrap_0.05": float(np.mean(pb < 0.05)),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(rows[-1], flush=True)
    coverage = {}
    for name, design in DESIGNS.items():
        truth, _ = true_macro(design)
        rng = np.random.default_rng(7)
        hits = [
            (ci := one_vs_rest(*draw(rng, args.n, design)[:2], n_boot=2, curves=False).macro)
            and ci.lower <= truth <= ci.upper
            for _ in range(args.pairs)
        ]
        coverage[name] = float(np.mean(hits))
    print("coverage of the 95% macro CI:", coverage, flush=True)
    rng = np.random.default_rng(11)
    naive, clustered = [], []
    for _ in range(args.pairs):
        y, a, b, patient = clustered_cohort(rng, n_patients=150, effect=1.5)
        naive.append(delong_test(y, a, b).p_value < 0.05)
        clustered.append(delong_test(y, a, b, groups=patient).p_value < 0.05)
    cluster = {"naive_0.05": float(np.mean(naive)), "clustered_0.05": float(np.mean(clustered))}
    print("two vertebrae per patient (150 patients):", cluster, flush=True)
    out = Path(__file__).parent / "results" / "macro_size.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"size": rows, "coverage": coverage, "clustered": cluster}, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
