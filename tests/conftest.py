"""Shared fixtures: small image/mask pairs made on the fly, and the reference data folder."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The reference data beside the checkout (``../shared/data``) or $OVFDLR_SHARED_DATA."""
    return Path(os.environ.get("OVFDLR_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep the per-case cache and imported weights of every test run out of the user's home."""
    os.environ["OVFDLR_CACHE"] = str(tmp_path_factory.mktemp("ovfdlr-cache"))
    os.environ["OVFDLR_WEIGHTS"] = str(tmp_path_factory.mktemp("ovfdlr-weights"))


@pytest.fixture(autouse=True, scope="session")
def _native_kernels_compiled():
    """Compile (first run on a machine) or load the native radiomics engine's numba kernels
    once, in this process, before any test starts worker processes: otherwise each worker of
    a fresh checkout would compile them at the same time (about 25 s of CPU each)."""
    from ovfdlr.engines.native import warm_up

    warm_up()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"reference data folder not found: {path} (set OVFDLR_SHARED_DATA)")
    return path


def write_volume(
    path: Path,
    array: np.ndarray,
    spacing=(1.0, 1.0, 1.0),
    origin=(0.0, 0.0, 0.0),
    direction=None,
) -> Path:
    """Write a numpy (z, y, x) array as an image with the given geometry."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def cube_case(folder: Path, name: str, *, shape=(24, 24, 24), box=(6, 18), label=1, **geometry):
    """A CT-like volume and a mask with a cube of ``label``; returns (image, mask) paths."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    ct = rng.normal(40, 10, shape).astype(np.int16)
    mask = np.zeros(shape, np.uint8)
    lo, hi = box
    mask[lo:hi, lo:hi, lo:hi] = label
    ct[mask > 0] += 150
    image = write_volume(folder / f"{name}_ct.nii.gz", ct, **geometry)
    mask_path = write_volume(folder / f"{name}_mask.nii.gz", mask, **geometry)
    return image, mask_path


def simulated_features(
    n: int = 240,
    n_features: int = 40,
    seed: int = 0,
    *,
    demographics: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features that carry the class for a labelled cohort of patients with 1-2 vertebrae,
    split by patient into train / internal / external (60/20/20).

    ``demographics`` gives two centres, ages and sexes (one centre otherwise).
    """
    rng = np.random.default_rng(seed)
    patients = np.sort(rng.integers(0, int(n * 0.8), n))
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, n_features))
    x[:, 0] += 1.2 * y
    x[:, 1] += 1.0 * (y == 2)
    x[:, 2] -= 1.0 * (y == 1)
    ids = [f"c{i:03d}" for i in range(n)]
    features = pd.DataFrame(
        x,
        index=pd.Index(ids, name="case_id"),
        columns=[f"original_firstorder_F{i}" for i in range(n_features)],
    )
    unique = np.unique(patients)
    cohort_of = {
        p: "train" if k < 0.6 * len(unique) else "internal" if k < 0.8 * len(unique) else "external"
        for k, p in enumerate(unique)
    }
    columns = {
        "case_id": ids,
        "patient_id": [f"P{p}" for p in patients],
        "label": pd.array(y, dtype="Int64"),
        "cohort": [cohort_of[p] for p in patients],
        "centre": "A",
    }
    if demographics:
        columns["centre"] = ["A" if p % 3 else "B" for p in patients]
        columns["age"] = rng.normal(70, 8, n).round()
        columns["sex"] = rng.choice(["F", "M"], n, p=[0.7, 0.3])
    return features, pd.DataFrame(columns, index=ids)


def write_manifest(folder: Path, rows: list[dict]) -> Path:
    path = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def good_row(folder: Path, case_id: str, patient_id: str, cohort="train", label=0, centre="A"):
    image, mask = cube_case(folder, case_id)
    return {
        "case_id": case_id,
        "patient_id": patient_id,
        "image": image.name,
        "mask": mask.name,
        "mask_label": 1,
        "label": label,
        "cohort": cohort,
        "centre": centre,
    }


@pytest.fixture(scope="session")
def synthetic_cohort(tmp_path_factory) -> Path:
    """A small synthetic cohort (48 vertebrae, every fracture type), shared by the suite."""
    from ovfdlr.synthetic import generate_cohort

    folder = tmp_path_factory.mktemp("synthetic")
    generate_cohort(folder, 48, seed=7, jobs=2, progress=False)
    return folder


@pytest.fixture(scope="session")
def synthetic_60(tmp_path_factory) -> Path:
    """The 60-vertebra synthetic cohort of seed 1 (ASTLOF labels), rendered once for the
    suite's end-to-end runs (tests write other manifests beside or about it, never into it)."""
    from ovfdlr.synthetic import generate_cohort

    folder = tmp_path_factory.mktemp("cohort60")
    generate_cohort(folder, 60, seed=1, jobs=2, progress=False)
    return folder


# ---------------------------------------------------------------------------------------------
# the browser tests: run where Chromium is, reported as NOT RUN where it is not (a failure when
# $OVFDLR_REQUIRE_BROWSER is set, as in CI)

REQUIRE_BROWSER = "OVFDLR_REQUIRE_BROWSER"
_browser_not_run: list[str] = []


def browser_required() -> bool:
    """Whether a missing browser fails the browser tests instead of skipping them."""
    return os.environ.get(REQUIRE_BROWSER, "").strip() not in ("", "0", "false", "no")


def _browser_or_skip(find) -> str:
    """``find()``'s executable; without one, skip the test (fail with $OVFDLR_REQUIRE_BROWSER)."""
    from ovfdlr.report.browser import BrowserError

    try:
        return find()
    except BrowserError as exc:
        missing = str(exc)
    if browser_required():
        pytest.fail(f"{missing} ({REQUIRE_BROWSER} is set: the browser tests must run)", False)
    _browser_not_run.append(missing)
    pytest.skip(f"browser test NOT RUN: {missing}")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary, for every test that opens a page in a real browser (session-scoped,
    so that a missing browser skips the test before its other fixtures are built)."""
    from ovfdlr.report.browser import find_chromium

    return _browser_or_skip(find_chromium)


@pytest.fixture(scope="session")
def chromedriver(chromium) -> str:
    """Chromium's WebDriver, for tests that drive a page (Selenium); skipped like
    :func:`chromium`."""
    from ovfdlr.report.browser import find_chromedriver

    return _browser_or_skip(find_chromedriver)


def pytest_terminal_summary(terminalreporter) -> None:
    """One line after the results when the browser tests did not run, and why."""
    skipped = terminalreporter.stats.get("skipped", [])
    count = sum(1 for report in skipped if "browser test NOT RUN" in str(report.longrepr))
    if count and _browser_not_run:
        terminalreporter.write_line(
            f"browser tests NOT RUN ({count}): {_browser_not_run[0]}; "
            f"set {REQUIRE_BROWSER}=1 to make a missing browser a failure",
            yellow=True,
            bold=True,
        )
