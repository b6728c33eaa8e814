"""PyRadiomics' own features of a fixed synthetic cohort: the reference of the native engine.

The cohort: 50 vertebrae of the synthetic generator (seed 0; 20 training, 10 internal,
12 external and 8 prospective cases from all three centres), the parameters: the shipped
``ct-vertebra.yaml`` (Original, 8 wavelet sub-bands, LoG at 1, 2 and 3 mm; all seven classes:
1,130 features). ``tests/test_native_engine.py`` computes the native engine's features of the
same cohort and compares them with this table, and recomputes two cases with PyRadiomics to
check that the table is still what the installed PyRadiomics gives. Re-record (about a minute
on two cores) with

    .venv/bin/python tests/reference/pyradiomics_synthetic.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FOLDER = Path(__file__).parent / "pyradiomics-synthetic"
TABLE = FOLDER / "features.parquet"
PROVENANCE = FOLDER / "provenance.json"
SIZES = {"train": 20, "internal": 10, "external": 12, "prospective": 8}
SEED = 0


def make_cohort(folder: Path):
    """The synthetic cohort the reference was computed on (byte-identical for the seed)."""
    from ovfdlr.cohort import load_manifest
    from ovfdlr.synthetic import generate_cohort

    generate_cohort(folder, sizes=SIZES, seed=SEED, progress=False)
    return load_manifest(folder / "manifest.csv")


def main() -> int:
    import tempfile

    from ovfdlr.engines.pyradiomics import version
    from ovfdlr.radiomics import extract_radiomics, load_params

    with tempfile.TemporaryDirectory() as tmp:
        cohort = make_cohort(Path(tmp))
        result = extract_radiomics(
            cohort, load_params(), engine="pyradiomics", cache_dir=False, jobs=2, progress=True
        )
    if len(result.errors):
        print(result.errors.to_string(), file=sys.stderr)
        return 1
    FOLDER.mkdir(exist_ok=True)
    result.features.to_parquet(TABLE)
    PROVENANCE.write_text(
        json.dumps({"engine": version(), "sizes": SIZES, "seed": SEED}, indent=2) + "\n",
        encoding="utf-8",
    )
    print(f"{TABLE}: {result.features.shape[0]} cases x {result.features.shape[1]} features")
    return 0


if __name__ == "__main__":
    sys.exit(main())
