"""The fault table: every bad input and every fault of a long run, what ovfdlr is expected to do
with it, and what it did (exit code, cases kept).

Each bad input is one case of a two-case manifest (a sound case c1 beside it): ``ovfdlr validate``
must name the case's check, and ``ovfdlr extract morphometry`` must keep the sound case and put
the other in errors.csv (or keep both, for a warning). Each fault of a run is provoked as it
happens in practice (a second writer, a killed holder, a damaged cache entry, a full disk, a file
size limit, SIGKILL). The table is printed (``pytest -s``) and must equal the one in
docs/reliability.md, so the page says what the code does.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml
from typer.testing import CliRunner

from ovfdlr.cli import app
from ovfdlr.runlock import RunLock

from .conftest import REPO, cube_case, good_row, write_manifest, write_volume
from .dicom_fixtures import IDENTIFIERS, ct_phantom, write_ct_series
from .test_integrity import (
    dicom_case,
    halve_one_slice,
    nifti_bytes,
    patched,
    respace_one_slice,
    tilt_one_slice,
)

runner = CliRunner()
DOC = REPO / "docs" / "reliability.md"
HEADER = "| input or fault | expected | seen | exit code | cases kept |"


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    fault: str
    expected: str
    seen: str
    exit_code: int | str
    kept: str

    def markdown(self) -> str:
        cells = (self.fault, self.expected, self.seen, str(self.exit_code), self.kept)
        return "| " + " | ".join(cells) + " |"


# ---------------------------------------------------------------------------------------------
# bad inputs: one case of a two-case manifest


def _checks(problems_csv: Path, case_id: str) -> list[tuple[str, str]]:
    table = pd.read_csv(problems_csv, dtype=str, keep_default_na=False)
    rows = table[table["case_id"] == case_id]
    return sorted(set(zip(rows["severity"], rows["check"], strict=True)))


def _bad_input(folder: Path, image, mask, *, case_id: str = "c2", extra=None) -> tuple:
    """Validate and extract a manifest of a sound case c1 and the case under test c2;
    returns (checks of c2 as (severity, check), validate's exit code, cases extracted, rows)."""
    good = good_row(folder, "c1", "p1")
    bad = good_row(folder, "c2", "p2") | {"image": str(image), "mask": str(mask), **(extra or {})}
    manifest = write_manifest(folder, [good, bad])
    problems = folder / "problems.csv"
    checked = runner.invoke(
        app, ["validate", str(manifest), "--jobs", "1", "--problems-csv", str(problems)]
    )
    assert "Traceback" not in checked.output, checked.output
    out = folder / "out" / "morphometry.parquet"
    command = ["extract", "morphometry", str(manifest), "--out", str(out), "--jobs", "1"]
    extracted = runner.invoke(app, [*command, "--cache", str(folder / "cache")])
    assert "Traceback" not in extracted.output, extracted.output
    kept = len(pd.read_parquet(out)) if out.is_file() else 0
    errors = folder / "out" / "errors.csv"
    failed = pd.read_csv(errors)["case_id"].tolist() if errors.is_file() else []
    written = [checked.output, extracted.output, problems.read_text(encoding="utf-8")]
    written += [errors.read_text(encoding="utf-8")] if errors.is_file() else []
    _IDENTIFIERS_SEEN.extend(v for v in _identifier_parts() if v in "".join(written))
    return _checks(problems, case_id), checked.exit_code, kept, failed


_IDENTIFIERS_SEEN: list[str] = []


def _identifier_parts() -> list[str]:
    """Every word of the patient identifiers the test DICOM series carry."""
    return [part for value in IDENTIFIERS.values() for part in value.replace("^", " ").split()]


def refused(check: str) -> Callable[[Path], Row]:
    """A scenario whose case must be refused under ``check``: in validate and in extraction."""

    def outcome(folder: Path, image, mask, extra=None) -> tuple[str, int, str]:
        checks, code, kept, failed = _bad_input(folder, image, mask, extra=extra)
        seen = "refused [" + ", ".join(c for s, c in checks if s == "error") + "]"
        assert failed == ["c2"], failed
        return seen, code, f"{kept} of 2"

    outcome.expected = f"refused [{check}]"  # type: ignore[attr-defined]
    return outcome


def warned(check: str) -> Callable:
    def outcome(folder: Path, image, mask, extra=None) -> tuple[str, int, str]:
        checks, code, kept, failed = _bad_input(folder, image, mask, extra=extra)
        seen = "warned [" + ", ".join(c for s, c in checks if s == "warning") + "], kept"
        assert failed == [], failed
        return seen, code, f"{kept} of 2"

    outcome.expected = f"warned [{check}], kept"  # type: ignore[attr-defined]
    return outcome


def _cut_gz(folder: Path):
    image, mask = cube_case(folder, "full")
    cut = folder / "cut.nii.gz"
    cut.write_bytes(image.read_bytes()[:3000])
    return cut, mask


def _corrupt_gz(folder: Path):
    image, mask = cube_case(folder, "full")
    data = bytearray(image.read_bytes())
    data[-6] ^= 0xFF  # a byte of the CRC-32 trailer
    bad = folder / "crc.nii.gz"
    bad.write_bytes(bytes(data))
    return bad, mask


def _short_nii(folder: Path):
    _, mask = cube_case(folder, "ok")
    data = nifti_bytes(folder)
    short = folder / "short.nii"
    short.write_bytes(bytes(data[:-1000]))
    return short, mask


def _zero_spacing(folder: Path):
    _, mask = cube_case(folder, "ok")
    data = nifti_bytes(folder)
    return patched(folder, "zero.nii", data, (80, "<f", [0.0]), (252, "<hh", [0, 0])), mask


def _sheared(folder: Path):
    _, mask = cube_case(folder, "ok")
    data = nifti_bytes(folder)
    return patched(folder, "shear.nii", data, (280, "<4f", [-1.0, 0.5, 0.0, 0.0])), mask


def _nan_affine(folder: Path):
    _, mask = cube_case(folder, "ok")
    data = nifti_bytes(folder)
    return patched(folder, "nan.nii", data, (292, "<f", [float("nan")])), mask


def _dicom(change: Callable | None = None, **series):
    def build(folder: Path):
        path, mask, files = dicom_case(folder, **series)
        if change is not None:
            change(path, files)
        return path, mask

    return build


def _edit_slice(edit: Callable) -> Callable:
    def change(path: Path, files: list[Path]) -> None:
        ds = pydicom.dcmread(files[5])
        edit(ds)
        ds.save_as(files[5])

    return change


def _uneven(k, ds):
    if k >= 6:
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k + 0.5]


def _second_series(path: Path, files: list[Path]) -> None:
    write_ct_series(path / "more", ct_phantom((5, 16, 16)))
    for child in (path / "more").iterdir():
        child.rename(path / f"more-{child.name}")
    (path / "more").rmdir()


def _label_values(value, dtype) -> Callable:
    def build(folder: Path):
        image, _ = cube_case(folder, "odd")
        labels = np.zeros((24, 24, 24), dtype)
        labels[6:18, 6:18, 6:18] = 1
        labels[2:4, 2:4, 2:4] = value
        return image, write_volume(folder / "odd_mask.nii.gz", labels)

    return build


def _ct_as_mask(folder: Path):
    image, _ = cube_case(folder, "self")
    return image, image


def _unrescaled_dicom(folder: Path):
    path, mask, _ = dicom_case(folder, rescale=False)
    return path, mask


INPUTS: list[tuple[str, Callable, Callable]] = [
    (".nii.gz cut to its first 3,000 bytes", _cut_gz, refused("truncated-file")),
    (".nii.gz whose CRC-32 fails", _corrupt_gz, refused("corrupt-stream")),
    (".nii holding fewer voxels than its header", _short_nii, refused("voxel-count")),
    ("NIfTI with zero spacing", _zero_spacing, refused("header-spacing")),
    ("NIfTI with a sheared sform", _sheared, refused("header-direction")),
    ("NIfTI with NaN in the affine", _nan_affine, refused("header-affine")),
    (
        "DICOM series with a slice removed",
        _dicom(lambda p, files: files[5].unlink()),
        refused("dicom-missing-slice"),
    ),
    (
        "DICOM series with a slice twice",
        _dicom(lambda p, files: shutil.copy(files[4], p / "copy.dcm")),
        refused("dicom-duplicate-slice"),
    ),
    ("DICOM series unevenly spaced", _dicom(edit=_uneven), refused("dicom-slice-spacing")),
    (
        "DICOM slice of another orientation",
        _dicom(_edit_slice(tilt_one_slice)),
        refused("dicom-mixed-orientation"),
    ),
    (
        "DICOM slice of another pixel spacing",
        _dicom(_edit_slice(respace_one_slice)),
        refused("dicom-mixed-pixel-spacing"),
    ),
    (
        "DICOM slice of another matrix",
        _dicom(_edit_slice(halve_one_slice)),
        refused("dicom-mixed-matrix"),
    ),
    ("DICOM folder holding two series", _dicom(_second_series), refused("dicom-several-series")),
    ("mask with non-integer values", _label_values(0.5, np.float32), refused("mask-not-integer")),
    ("mask with negative values", _label_values(-1, np.int16), refused("mask-negative")),
    ("CT given as its own mask", _ct_as_mask, refused("mask-is-image")),
    ("DICOM series with gantry tilt", _dicom(tilt_degrees=15.0), warned("dicom-gantry-tilt")),
    (
        "DICOM series without rescale slope/intercept",
        _unrescaled_dicom,
        warned("ct-values, dicom-no-rescale"),
    ),
]


@pytest.fixture(scope="module")
def table() -> list[Row]:
    return []


@pytest.mark.parametrize(("fault", "build", "judge"), INPUTS, ids=[i[0] for i in INPUTS])
def test_bad_input(fault, build, judge, table, tmp_path):
    image, mask = build(tmp_path)
    seen, code, kept = judge(tmp_path, image, mask)
    table.append(Row(fault, judge.expected, seen, code, kept))
    assert seen == judge.expected
    assert code == (1 if seen.startswith("refused") else 0)


def test_no_identifier_of_a_dicom_header_in_any_output(table):
    dicom = [fault for fault, _, _ in INPUTS if fault.startswith("DICOM")]
    assert len(dicom) >= 8, "run the whole module: the DICOM rows come first"
    seen = "none in any output" if not _IDENTIFIERS_SEEN else ", ".join(_IDENTIFIERS_SEEN)
    fault = f"patient identifiers in the headers of the {len(dicom)} DICOM series above"
    table.append(Row(fault, "none in any output", seen, "-", "-"))
    assert seen == "none in any output"


def test_same_image_under_two_patients(table, tmp_path):
    rows = [good_row(tmp_path, "c1", "p1"), good_row(tmp_path, "c2", "p2", cohort="internal")]
    copy = tmp_path / "copy_ct.nii.gz"
    shutil.copy(tmp_path / rows[0]["image"], copy)
    rows[1]["image"] = copy.name
    problems = tmp_path / "problems.csv"
    result = runner.invoke(
        app,
        ["validate", str(write_manifest(tmp_path, rows)), "--problems-csv", str(problems)],
    )
    checks = {c for _, c in _checks(problems, "c1")} & {c for _, c in _checks(problems, "c2")}
    seen = "refused [" + ", ".join(sorted(checks)) + "], both rows named"
    expected = "refused [same-image-two-patients], both rows named"
    table.append(Row("one CT under two patients in two cohorts", expected, seen, 1, "0 of 2"))
    assert seen == expected and result.exit_code == 1


# ---------------------------------------------------------------------------------------------
# faults of long runs


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Four small cube cases (morphometry takes a fraction of a second on them)."""
    from .test_extraction import make_cohort

    return make_cohort(tmp_path_factory.mktemp("faults"), 4, shape=(24, 24, 24), box=(6, 18))


def _extract(cohort: Path, folder: Path, *extra: str) -> list[str]:
    out = folder / "out" / "morphometry.parquet"
    command = ["extract", "morphometry", str(cohort), "--out", str(out), "--jobs", "1"]
    return [*command, "--cache", str(folder / "cache"), *extra]


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.name.endswith((".tmp", ".partial"))]


def test_second_writer_of_a_run_folder(table, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run):
        result = runner.invoke(app, ["report", str(run)])
    named = "is in use by another run" in result.output and f"pid {os.getpid()}" in result.output
    seen = "refused, holder's host, pid, start named" if named else result.output.strip()
    expected = "refused, holder's host, pid, start named"
    table.append(Row("a second run on a folder in use", expected, seen, result.exit_code, "-"))
    assert seen == expected and result.exit_code == 1


def test_lock_of_a_killed_run(table, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom ovfdlr.runlock import RunLock\n"
            "RunLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(60)\n",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with RunLock(run) as lock:
        seen = "taken over, stale holder named" if lock.stale.pid == holder.pid else "?"
    expected = "taken over, stale holder named"
    table.append(Row("the lock of a killed run", expected, seen, "-", "-"))
    assert seen == expected


def test_truncated_cache_entry(table, cohort, tmp_path):
    command = _extract(cohort, tmp_path)
    assert runner.invoke(app, command).exit_code == 0
    entries = sorted((tmp_path / "cache").rglob("*.json"))
    entries[0].write_bytes(entries[0].read_bytes()[:40])
    result = runner.invoke(app, command)
    out = tmp_path / "out" / "morphometry.parquet"
    reported = "damaged cache entries recomputed 1" in " ".join(result.output.split())
    seen = "reported, recomputed" if reported and "computed 1" in result.output else "used"
    table.append(
        Row("a truncated cache entry", "reported, recomputed", seen, result.exit_code, "4 of 4")
    )
    assert seen == "reported, recomputed" and len(pd.read_parquet(out)) == 4


def test_no_space_left(table, cohort, tmp_path, monkeypatch):
    from .test_faults import fill_the_disk

    command = _extract(cohort, tmp_path)
    fill_the_disk(monkeypatch)
    failed = runner.invoke(app, command)
    monkeypatch.undo()
    clean = not _leftovers(tmp_path) and not (tmp_path / "out" / "morphometry.parquet").exists()
    said = "no space left on device" in failed.output and "Traceback" not in failed.output
    resumed = runner.invoke(app, command)
    seen = "stage ends, nothing partial, rerun completes"
    if not (said and clean and resumed.exit_code == 0):
        seen = failed.output.strip()
    kept = len(pd.read_parquet(tmp_path / "out" / "morphometry.parquet"))
    expected = "stage ends, nothing partial, rerun completes"
    table.append(Row("no space left (ENOSPC)", expected, seen, failed.exit_code, f"{kept} of 4"))
    assert seen == expected and failed.exit_code == 1


def test_file_too_large(table, cohort, tmp_path):
    command = [sys.executable, "-m", "ovfdlr", *_extract(cohort, tmp_path)]
    limit = 8192  # above a cache entry, below the feature table

    def small_files() -> None:  # CPython ignores SIGXFSZ: the write raises EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    child = subprocess.run(
        command, preexec_fn=small_files, capture_output=True, text=True, encoding="utf-8", env=env
    )
    out = tmp_path / "out" / "morphometry.parquet"
    said = "file too large" in child.stderr and "Traceback" not in child.stderr
    clean = not _leftovers(tmp_path) and not out.exists()
    resumed = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", env=env)
    seen = "stage ends, nothing partial, rerun completes"
    if not (said and clean and resumed.returncode == 0):
        seen = child.stderr.strip()[-200:]
    expected = "stage ends, nothing partial, rerun completes"
    kept = f"{len(pd.read_parquet(out))} of 4"
    table.append(Row("file size limit (EFBIG)", expected, seen, child.returncode, kept))
    assert seen == expected and child.returncode == 1


def test_sigkill_of_an_extraction(table, tmp_path):
    from .test_extraction import make_cohort

    manifest = make_cohort(tmp_path / "cohort", 10, shape=(40, 40, 40), box=(8, 32))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"imageType": {"Original": {}, "LoG": {"sigma": [1.0]}}}))
    out, cache = tmp_path / "features.parquet", tmp_path / "cache"
    command = [sys.executable, "-m", "ovfdlr", "extract", "radiomics", str(manifest)]
    command += ["--params", str(params), "--jobs", "1", "--out", str(out), "--cache", str(cache)]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if len(list(cache.rglob("*.json"))) >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the extraction ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = len(list(cache.rglob("*.json")))
    resumed = subprocess.run(command, capture_output=True, text=True, encoding="utf-8")
    text = " ".join(resumed.stdout.split())
    ok = f"cached {done}" in text and f"computed {10 - done}" in text and not _leftovers(tmp_path)
    seen = "resumes, finished cases kept" if ok else resumed.stdout[-200:]
    expected = "resumes, finished cases kept"
    table.append(Row("SIGKILL during an extraction", expected, seen, -9, f"{done} of 10"))
    assert seen == expected and len(pd.read_parquet(out)) == 10


# ---------------------------------------------------------------------------------------------
# preflight: what can be known before computing is known before computing


def _preflight(tmp_path: Path, make: Callable[[Path], list[str]]) -> tuple[str, int]:
    from .test_preflight import error_lines

    args = make(tmp_path)
    result = runner.invoke(app, args)
    lines = error_lines(result.output)
    one_line = len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in lines[0]
    out = Path(args[args.index("--out") + 1])
    untouched = not out.exists() or out.is_file()
    seen = "one-line error before any stage" if one_line and untouched else result.output
    return seen, result.exit_code


def _missing_weights(folder: Path) -> list[str]:
    from .test_preflight import write_config

    arms = [{"name": "deep", "radiomics": False, "deep": {"weights": "imagenet:absent.pth"}}]
    return ["run", str(write_config(folder, arms=arms)), "--out", str(folder / "run")]


def _out_is_a_file(folder: Path) -> list[str]:
    from .test_preflight import write_config

    (folder / "run.txt").write_text("")
    return ["run", str(write_config(folder)), "--out", str(folder / "run.txt")]


def _too_few_patients(folder: Path) -> list[str]:
    from .test_preflight import write_config

    config = write_config(folder, models={"classifiers": ["lr"], "folds": 5, "quick": True})
    return ["run", str(config), "--out", str(folder / "run")]


PREFLIGHT = [
    ("a weights file the config names is missing", _missing_weights),
    ("--out names a file where a run folder goes", _out_is_a_file),
    ("fewer patients of a class than CV folds", _too_few_patients),
]


@pytest.mark.parametrize(("fault", "make"), PREFLIGHT, ids=[p[0] for p in PREFLIGHT])
def test_preflight(fault, make, table, tmp_path):
    seen, code = _preflight(tmp_path, make)
    expected = "one-line error before any stage"
    table.append(Row(fault, expected, seen, code, "-"))
    assert seen == expected and code == 1


# ---------------------------------------------------------------------------------------------
# a case outside what the model was trained on


def test_a_3mm_ct_against_a_thin_slice_training_envelope(table, shared_data):
    from ovfdlr.envelope import build_envelope, check_case, measure_acquisition
    from ovfdlr.totalseg import vertebra_label

    from .test_predict import acquisition_rows, feature_rows

    envelope = build_envelope(acquisition_rows(60), feature_rows(60))
    folder = shared_data / "totalsegmentator"
    values = measure_acquisition(
        folder / "example_ct.nii.gz",
        folder / "example_ct_vertebrae.nii.gz",
        vertebra_label("L1"),
    )
    far = sorted(d.quantity for d in check_case(envelope, values) if d.far)
    seen = "flagged outside the model's domain [" + ", ".join(far) + "]"
    # the whole L1 (with its arch) is also larger than the training vertebral bodies
    expected = (
        "flagged outside the model's domain [roi_volume_ml, spacing_inplane_mm, spacing_slice_mm]"
    )
    table.append(
        Row("the shared 3-mm CT (L1) against 0.7-mm training", expected, seen, 0, "1 of 1")
    )
    assert seen == expected


# ---------------------------------------------------------------------------------------------
# the table, printed and compared with docs/reliability.md


def test_the_table_is_the_one_in_the_docs(table):
    assert len(table) >= len(INPUTS) + len(PREFLIGHT) + 9, (
        "run the whole module: the rows come from its tests"
    )
    lines = [HEADER, "| --- | --- | --- | --- | --- |", *[r.markdown() for r in table]]
    text = "\n".join(lines)
    print("\n" + text)
    documented = DOC.read_text(encoding="utf-8")
    start = documented.index(HEADER)
    end = documented.index("\n\n", start)
    documented_rows = sorted(documented[start:end].splitlines()[2:])
    # the kept counts of the killed extraction depend on when it was killed
    pattern = re.compile(r"\| \d+ of 10 \|$")
    normal = sorted(pattern.sub("| k of 10 |", line) for line in lines[2:])
    assert [pattern.sub("| k of 10 |", line) for line in documented_rows] == normal
