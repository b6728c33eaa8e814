"""Checks before any stage runs (ovfdlr.preflight), and how the browser tests behave on a
machine without Chromium (the ``chromium`` fixture of conftest.py and the Makefile's
``browser`` target).

Every preflight failure here must be one error naming the option, file or class, exit
non-zero and write nothing; nothing here runs a stage (the manifests name images that do not
exist: only the cohort stage would open them, so a stage that ran would fail differently).
How long a check takes is measured, not asserted: a wall-clock limit belongs in a benchmark.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ovfdlr.cli import app
from ovfdlr.config import load_config
from ovfdlr.preflight import PreflightError, check_experiment, raise_for_problems
from ovfdlr.report import browser

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def _warm_imports():
    """Import what the checks import (torch for the weights, scikit-learn for the folds) once,
    so that the timings measure the checks and not the first import of a library."""
    for module in ("ovfdlr.deep.backbones", "ovfdlr.experiment", "ovfdlr.training"):
        importlib.import_module(module)


def write_manifest(folder: Path, patients: dict[int, int], *, internal: bool = True) -> Path:
    """A manifest with ``patients[c]`` training patients of class c (one vertebra each), two
    internal and two external cases; the images are never opened here."""
    rows = []
    for c, n in patients.items():
        for k in range(n):
            rows.append(("train", c, f"t{c}{k}"))
    if internal:
        rows += [("internal", 0, "i0"), ("internal", 1, "i1")]
    rows += [("external", 0, "e0"), ("external", 2, "e2")]
    table = pd.DataFrame(
        {
            "case_id": [f"{p}_L1" for _, _, p in rows],
            "patient_id": [p for _, _, p in rows],
            "image": [f"{p}_ct.nii.gz" for _, _, p in rows],
            "mask": [f"{p}_mask.nii.gz" for _, _, p in rows],
            "label": [c for _, c, _ in rows],
            "cohort": [cohort for cohort, _, _ in rows],
            "centre": "A",
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.csv"
    table.to_csv(path, index=False)
    return path


def write_config(folder: Path, **changes) -> Path:
    """A one-arm radiomics config over a manifest with 4 training patients per class (2 folds,
    no nested cross-validation unless ``changes`` say otherwise)."""
    config = {
        "manifest": str(write_manifest(folder, {0: 4, 1: 4, 2: 4})),
        "arms": [{"name": "radiomics", "morphometry": False}],
        "models": {"classifiers": ["lr"], "folds": 2, "quick": True},
        "evaluation": {"nested_cv": False},
        "cache": str(folder / "cache"),
    }
    config.update(changes)
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def invoke(args: list) -> object:
    return runner.invoke(app, [str(a) for a in args])


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def assert_one_error(result, pattern: str) -> str:
    """Exit 1, one line 'error: ...' matching ``pattern``, no traceback."""
    assert result.exit_code == 1, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), lines
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


# ---------------------------------------------------------------------------------------------
# ovfdlr run


def test_a_missing_weights_file_stops_run_before_any_stage(tmp_path):
    arms = [
        {"name": "radiomics", "morphometry": False},
        {"name": "deep", "radiomics": False, "morphometry": False,
         "deep": {"weights": "radimagenet:weights/RadImageNet.h5"}},
    ]  # fmt: skip
    config = write_config(tmp_path, arms=arms)
    out = tmp_path / "run"
    result = invoke(["run", config, "--out", out])
    missing = tmp_path / "weights" / "RadImageNet.h5"
    line = assert_one_error(result, "weights file not found")
    assert line == (f"error: arms.1.deep.weights (deep): {missing}: weights file not found")
    assert not out.exists()  # no stage ran: no run folder, no run.log


def test_a_missing_radiomics_params_file_stops_run(tmp_path):
    config = write_config(tmp_path, radiomics={"params": "no.yaml"})
    out = tmp_path / "run"
    result = invoke(["run", config, "--out", out])
    assert_one_error(result, rf"^error: radiomics\.params: {re.escape(str(tmp_path))}")
    assert "no.yaml: parameter file not found" in result.output
    assert not out.exists()


def test_run_out_that_is_a_file(tmp_path):
    config = write_config(tmp_path)
    out = tmp_path / "run.txt"
    out.write_text("notes")
    result = invoke(["run", config, "--out", out])
    line = assert_one_error(result, "is a file")
    assert line == f"error: --out {out} is a file; a run folder is expected"
    assert out.read_text(encoding="utf-8") == "notes"
    assert not (tmp_path / "cache").exists()


def test_too_few_patients_per_class_for_the_folds(tmp_path):
    config = write_config(tmp_path, models={"classifiers": ["lr"], "folds": 3})
    write_manifest(tmp_path, {0: 4, 1: 3, 2: 2})
    out = tmp_path / "run"
    result = invoke(["run", config, "--out", out])
    line = assert_one_error(result, "class 2")
    assert line == (
        "error: training cohort 'train': class 2 has 2 patients (patients per class 0: 4, "
        "1: 3, 2: 2); 3-fold cross-validation (models.folds) needs at least 3 patients in "
        "every class"
    )
    assert not out.exists()


def test_nested_cv_needs_enough_patients_in_every_outer_training_part(tmp_path):
    # 3 patients of class 2 suffice for 3-fold CV, not for 3-fold CV inside 3 outer folds
    config = write_config(
        tmp_path,
        models={"classifiers": ["lr"], "folds": 3},
        evaluation={"nested_cv": True},
    )
    write_manifest(tmp_path, {0: 6, 1: 6, 2: 3})
    out = tmp_path / "run"
    result = invoke(["run", config, "--out", out])
    line = assert_one_error(result, "nested cross-validation")
    assert re.fullmatch(
        r"error: training cohort 'train': nested cross-validation \(arms radiomics\): outer "
        r"fold \d of 3 leaves 2 patients of class 2 for training \(patients per class there "
        r"0: 4, 1: 4, 2: 2\); its 3-fold inner cross-validation \(models\.folds\) needs at "
        r"least 3 in every class: lower models\.folds or evaluation\.nested_folds, or set "
        r"evaluation\.nested_cv: false",
        line,
    ), line
    assert not out.exists()


def test_every_problem_is_listed_at_once(tmp_path):
    arms = [{"name": "deep", "radiomics": False, "morphometry": False,
             "deep": {"weights": "file:missing.pth"}}]  # fmt: skip
    config = write_config(
        tmp_path,
        arms=arms,
        models={"classifiers": ["lr"], "folds": 5, "select_on": "internal"},
    )
    write_manifest(tmp_path, {0: 5, 1: 5, 2: 5}, internal=False)
    out = tmp_path / "run.txt"
    out.write_text("")
    result = invoke(["run", config, "--out", out])
    assert result.exit_code == 1
    lines = error_lines(result.output)
    assert lines[0] == "error: 3 problems, found before any stage ran:"
    weights = tmp_path / "missing.pth"
    assert [line.strip() for line in lines[1:]] == [
        f"--out {out} is a file; a run folder is expected",
        f"arms.0.deep.weights (deep): {weights}: weights file not found",
        "models.select_on: 'internal' ranks the classifiers on the internal cohort 'internal', "
        "which has no labelled case in the manifest",
    ]


def test_manifest_errors_name_the_file_row_and_case(tmp_path):
    config = write_config(tmp_path)
    manifest = tmp_path / "manifest.csv"
    table = pd.read_csv(manifest)
    table.loc[1, "label"] = 7
    table.to_csv(manifest, index=False)
    result = invoke(["run", config, "--out", tmp_path / "run"])
    line = assert_one_error(result, r"row 3, case t01_L1")
    assert line.startswith(f"error: manifest {manifest}: row 3, case t01_L1: ")
    assert line.endswith("[label]")  # the check's name survives the console's markup


def test_run_experiment_checks_first_too(tmp_path):
    """Python callers get the same checks: nothing is written."""
    config = load_config(write_config(tmp_path, radiomics={"params": "no.yaml"}))
    from ovfdlr.experiment import run_experiment

    out = tmp_path / "run"
    with pytest.raises(PreflightError, match="parameter file not found") as info:
        run_experiment(config, out)
    assert [p.check for p in info.value.problems] == ["radiomics-params"]
    assert not out.exists()


def test_the_lasso_needs_as_many_patients_as_its_folds():
    """Two patients of each class with five vertebrae each: enough for 2-fold CV, but a CV
    training part keeps 3 patients, fewer than the 5 folds the LASSO draws there (training
    would stop with '5 folds need at least 5 patients (found 3)')."""
    from ovfdlr.labels import scheme_named
    from ovfdlr.preflight import training_folds

    rows = [(f"P{c}{p}", c) for c in range(3) for p in range(2) for _ in range(5)]
    cohort = pd.DataFrame(
        {
            "patient_id": [p for p, _ in rows],
            "label": pd.array([c for _, c in rows], dtype="Int64"),
            "cohort": "train",
        }
    )
    settings = {"labels": scheme_named("astlof"), "training": "train", "seed": 0}
    [problem] = training_folds(cohort, folds=2, folds_option="--folds", **settings)
    assert problem.check == "lasso-folds"
    assert problem.message == (
        "training cohort 'train': the LASSO's 5-fold cross-validation (on CV fold 0's training "
        "part of the cohort) needs at least 5 patients (found 3): patients with many vertebrae "
        "leave it too few patients"
    )
    assert training_folds(cohort, folds=2, folds_option="--folds", lasso_cv=3, **settings) == []


def test_a_sound_config_has_no_problem(tmp_path):
    config = load_config(write_config(tmp_path, evaluation={"nested_cv": True}))
    problems = check_experiment(config, tmp_path / "run")
    assert problems == []
    raise_for_problems(problems)  # does not raise


# ---------------------------------------------------------------------------------------------
# ovfdlr train, extract, preview


@pytest.fixture
def features(tmp_path) -> Path:
    manifest = write_manifest(tmp_path, {0: 4, 1: 4, 2: 4})
    ids = pd.read_csv(manifest)["case_id"]
    path = tmp_path / "features.parquet"
    pd.DataFrame({"f": range(len(ids))}, index=pd.Index(ids, name="case_id")).to_parquet(path)
    return path


def test_train_out_that_is_a_file_fails_before_training(tmp_path, features):
    out = tmp_path / "arm.txt"
    out.write_text("")
    args = ["train", features, "--manifest", tmp_path / "manifest.csv", "--out", out]
    result = invoke([*args, "--folds", "2", "--quick", "--classifiers", "lr"])
    line = assert_one_error(result, "is a file")
    assert line == f"error: --out {out} is a file; an arm folder is expected"
    assert out.read_text(encoding="utf-8") == ""


def test_train_too_few_patients_names_the_option(tmp_path, features):
    out = tmp_path / "arm"
    args = ["train", features, "--manifest", tmp_path / "manifest.csv", "--out", out]
    result = invoke([*args, "--folds", "5"])
    line = assert_one_error(result, r"5-fold cross-validation \(--folds\)")
    assert "class 0 has 4 patients (patients per class 0: 4, 1: 4, 2: 4)" in line
    assert not out.exists()


def test_extract_out_that_is_a_folder(tmp_path):
    manifest = write_manifest(tmp_path, {0: 2, 1: 2, 2: 2})
    out = tmp_path / "features"
    out.mkdir()
    for stage in ("radiomics", "morphometry"):
        result = invoke(["extract", stage, manifest, "--out", out])
        line = assert_one_error(result, "is a folder")
        assert line == f"error: --out {out} is a folder; a Parquet file is expected"
    assert list(out.iterdir()) == []


def test_extract_deep_missing_weights_and_pca(tmp_path):
    manifest = write_manifest(tmp_path, {0: 2, 1: 2, 2: 2})
    out = tmp_path / "deep.parquet"
    args = ["extract", "deep", manifest, "--out", out, "--arm", "x", "--pca", "50"]
    result = invoke([*args, "--weights", f"file:{tmp_path / 'w.pth'}"])
    assert result.exit_code == 1
    lines = [line.strip() for line in error_lines(result.output)]
    weights = tmp_path / "w.pth"
    assert lines[0] == "error: 2 problems, found before any stage ran:"
    assert lines[1] == f"--weights: {weights}: weights file not found"
    assert lines[2] == (
        "--pca: a PCA with 50 components needs at least as many labelled 'train' cases (found 6)"
    )
    assert not out.exists() and not (tmp_path / "errors.csv").exists()


def test_preview_out_below_a_file(tmp_path):
    manifest = write_manifest(tmp_path, {0: 2, 1: 2, 2: 2})
    blocker = tmp_path / "sheets"
    blocker.write_text("")
    result = invoke(["preview", manifest, "--out", blocker / "inputs"])
    line = assert_one_error(result, "is a file, not a folder")
    assert line == f"error: --out {blocker / 'inputs'}: {blocker} is a file, not a folder"


def test_weights_specs(tmp_path, monkeypatch):
    """Each weights family's check, with the spec parser and cache lookup of deep.specs."""
    from ovfdlr import preflight
    from ovfdlr.deep import specs

    present = tmp_path / "w.pth"
    present.write_bytes(b"")
    assert preflight.weights("random:3", "--weights") == []
    assert preflight.weights(f"file:{present}", "--weights") == []
    [problem] = preflight.weights(f"radimagenet:{tmp_path}", "--weights")
    assert problem.message == f"--weights: {tmp_path} is a folder, not a weights file"
    [problem] = preflight.weights("resnet:x", "--weights")
    assert problem.message.startswith("--weights: unknown weights 'resnet:x'")
    [problem] = preflight.weights("random:x", "--weights")
    assert problem.message == "--weights: random:x: the seed must be an integer"
    monkeypatch.setattr(specs, "imagenet_cache_file", lambda: None)
    [problem] = preflight.weights("imagenet", "arms.0.deep.weights (deep)")
    assert "ImageNet ResNet-50 weights not found in torchvision's cache" in problem.message
    assert preflight.weights(f"imagenet:{present}", "--weights") == []


# ---------------------------------------------------------------------------------------------
# the browser tests without a browser

BROWSER_TEST = """
def test_opens_a_page(chromium):
    assert chromium


def test_needs_no_browser():
    assert True
"""


def run_browser_tests(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a two-test file that uses the suite's ``chromium`` fixture in a fresh pytest, with
    Chromium pointed at a binary that does not exist; return the outcome of each test."""
    folder = tmp_path / "suite"
    folder.mkdir(exist_ok=True)
    shutil.copy(REPO / "tests" / "conftest.py", folder / "conftest.py")
    (folder / "test_browser.py").write_text(BROWSER_TEST)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OVFDLR_")}
    environment.update(OVFDLR_CHROMIUM=str(tmp_path / "no" / "chromium"), **env)
    xml = tmp_path / "results.xml"
    process = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
         "--rootdir", str(folder), "-c", os.devnull, str(folder)],
        capture_output=True, text=True, env=environment, timeout=120, cwd=folder,
    )  # fmt: skip
    outcomes = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        found = [child for child in case if child.tag in ("skipped", "failure", "error")]
        outcomes[case.get("name")] = (
            (found[0].tag, found[0].get("message", "")) if found else ("passed", "")
        )
    return process, outcomes


def test_a_missing_browser_skips_the_browser_tests(tmp_path):
    process, outcomes = run_browser_tests(tmp_path)
    assert process.returncode == 0, process.stdout
    kind, reason = outcomes["test_opens_a_page"]
    assert kind == "skipped" and "browser test NOT RUN" in reason
    assert browser.INSTALL_COMMAND in reason
    assert outcomes["test_needs_no_browser"] == ("passed", "")
    assert "browser tests NOT RUN (1): OVFDLR_CHROMIUM=" in process.stdout
    assert "1 passed, 1 skipped" in process.stdout


def test_a_missing_browser_fails_when_required(tmp_path):
    process, outcomes = run_browser_tests(tmp_path, OVFDLR_REQUIRE_BROWSER="1")
    assert process.returncode == 1, process.stdout
    kind, _ = outcomes["test_opens_a_page"]
    assert kind in ("error", "failure")
    assert browser.INSTALL_COMMAND in process.stdout
    assert "OVFDLR_REQUIRE_BROWSER is set: the browser tests must run" in process.stdout
    assert outcomes["test_needs_no_browser"] == ("passed", "")


def test_find_chromium_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.delenv("OVFDLR_CHROMIUM", raising=False)
    monkeypatch.setattr(browser, "DEFAULT_BINARY", str(tmp_path / "chromium"))
    monkeypatch.setattr(browser, "DEFAULT_DRIVER", str(tmp_path / "chromedriver"))
    monkeypatch.setenv("PATH", str(tmp_path))
    for find in (browser.find_chromium, browser.find_chromedriver):
        with pytest.raises(browser.BrowserError) as info:
            find()
        assert browser.INSTALL_COMMAND in str(info.value)


STUBS = {
    # sudo that needs a password: -n refuses; anything else would prompt (and is recorded)
    "sudo": 'if [ "$1" = -n ]; then echo "sudo: a password is required" >&2; exit 1; fi\n'
    'echo "prompted" >> "$LOG"; read answer; exit 1',
    "apt-get": 'echo "apt-get $*" >> "$LOG"',
    "env": 'exec /usr/bin/env "$@"',
}


def make_browser(tmp_path: Path, uid: int, *, apt: bool = True) -> tuple[str, str]:
    """``make browser`` with Chromium absent, a PATH of stubs only (``id`` says ``uid``) and
    no terminal: (what it printed, the commands the stubs recorded)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    stubs = tmp_path / f"bin-{uid}-{apt}"
    stubs.mkdir()
    for name, body in {**STUBS, "id": f"echo {uid}"}.items():
        if name == "apt-get" and not apt:
            continue
        (stubs / name).write_text(f"#!/bin/sh\n{body}\n")
        (stubs / name).chmod(0o755)
    log = stubs / "log"
    process = subprocess.run(
        [make, "-s", "-C", str(REPO), "browser", f"CHROMIUM_BIN={tmp_path / 'no-chromium'}",
         f"CHROMEDRIVER_BIN={tmp_path / 'no-chromedriver'}"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30,
        env={"PATH": str(stubs), "LOG": str(log)},
    )  # fmt: skip
    assert process.returncode == 0, process.stderr
    return process.stdout.strip(), log.read_text(encoding="utf-8") if log.exists() else ""


def test_make_browser_never_prompts(tmp_path):
    printed, calls = make_browser(tmp_path, 1000)
    assert printed == (
        "browser: chromium or chromium-driver is missing and cannot be installed here (not "
        "root and sudo needs a password); the browser tests will be skipped. Install with: "
        + browser.INSTALL_COMMAND
    )
    assert calls == ""  # neither apt-get nor a password prompt
    printed, calls = make_browser(tmp_path, 1000, apt=False)
    assert "(there is no apt-get)" in printed and calls == ""
    printed, calls = make_browser(tmp_path, 0)  # root: installs (the stub installs nothing)
    assert calls.splitlines() == [
        "apt-get update -qq",
        "apt-get install -y -qq --no-install-recommends chromium chromium-driver",
    ]
    assert printed.splitlines()[-1].startswith(
        "browser: chromium or chromium-driver is missing and cannot be installed here (still "
        "missing after apt-get)"
    )


def test_the_makefile_names_the_same_install_command():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert f"BROWSER_INSTALL  := {browser.INSTALL_COMMAND}\n" in makefile
    assert "export OVFDLR_REQUIRE_BROWSER=1" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert browser.INSTALL_COMMAND in (REPO / "README.md").read_text(encoding="utf-8")


def test_predict_checks_a_deep_bundles_weights_before_any_work(tmp_path):
    """A deep bundle whose pretrained weights are not on this machine: a one-line error naming
    the file, before any feature is computed (the check imports no torch)."""
    from types import SimpleNamespace

    from ovfdlr.cli import _prediction_weights

    def bundle(weights: str, finetuned=None):
        deep = SimpleNamespace(weights=weights, finetuned=finetuned)
        return SimpleNamespace(record=SimpleNamespace(feature_sets=SimpleNamespace(deep=deep)))

    missing = tmp_path / "RadImageNet-ResNet50.h5"
    [problem] = _prediction_weights(bundle(f"radimagenet:{missing}"), None)
    assert problem.message == f"bundle weights: {missing}: weights file not found"
    [problem] = _prediction_weights(bundle("radimagenet:/elsewhere.h5"), str(missing))
    assert problem.message == f"--weights: {missing}: weights file not found"
    present = tmp_path / "w.h5"
    present.write_bytes(b"")
    assert _prediction_weights(bundle("radimagenet:/elsewhere.h5"), str(present)) == []
    assert _prediction_weights(bundle("random:0"), str(missing)) == []
    assert (
        _prediction_weights(bundle("file:/gone.pt", finetuned="finetuned.safetensors"), None) == []
    )
    no_deep = SimpleNamespace(record=SimpleNamespace(feature_sets=SimpleNamespace(deep=None)))
    assert _prediction_weights(no_deep, None) == []
