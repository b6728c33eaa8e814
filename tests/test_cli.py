"""The command line: version, help, the synthetic cohort and the demo, and its reference page."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from ovfdlr import __version__
from ovfdlr.cli import app

from .conftest import REPO

runner = CliRunner()


def test_version_and_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"ovfdlr {__version__}"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    listed = {line.split()[1] for line in result.output.splitlines() if line.startswith("│ ")}
    assert {"validate", "synth", "demo", "extract", "preview"} <= listed


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "ovfdlr", "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in result.stdout


def test_synth_then_validate(tmp_path):
    result = runner.invoke(app, ["synth", "--out", str(tmp_path), "--n", "5", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    manifest = pd.read_csv(tmp_path / "manifest.csv")
    assert len(manifest) == 5
    result = runner.invoke(app, ["validate", str(tmp_path / "manifest.csv"), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "Cases per centre and cohort" in result.output


def test_synth_rejects_contradictory_sizes(tmp_path):
    result = runner.invoke(app, ["synth", "--out", str(tmp_path), "--n", "5", "--paper-scale"])
    assert result.exit_code == 1
    assert "one way: --n, --paper-scale or --sizes" in result.output


def test_synth_sizes_and_stratified_cohorts(tmp_path):
    options = ["--sizes", "train=4,external=6", "--stratify", "external", "--jobs", "1"]
    result = runner.invoke(app, ["synth", "--out", str(tmp_path), *options])
    assert result.exit_code == 0, result.output
    manifest = pd.read_csv(tmp_path / "manifest.csv")
    counts = manifest.groupby("cohort")["label"].value_counts().unstack(fill_value=0)
    assert counts.loc["external"].tolist() == [2, 2, 2]
    assert counts.loc["train"].sum() == 4 and set(manifest["cohort"]) == {"train", "external"}
    assert "│ external │ 2 │ 2 │ 2 │" in result.output  # the printed cases per class


@pytest.mark.parametrize("scheme", ["genant", "binary"])
def test_synth_labels_come_from_the_truth(tmp_path, scheme):
    options = ["--n", "3", "--labels", scheme, "--jobs", "1"]
    result = runner.invoke(app, ["synth", "--out", str(tmp_path), *options])
    assert result.exit_code == 0, result.output
    manifest = pd.read_csv(tmp_path / "manifest.csv")
    truth = pd.read_csv(tmp_path / "truth.csv").set_index("case_id").loc[manifest["case_id"]]
    # Genant: the grade of the true height loss; binary: ASTLOF class 2 against 0-1
    expected = truth["genant_grade"] if scheme == "genant" else (truth["label"] == 2).astype(int)
    assert manifest["label"].tolist() == expected.tolist()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--sizes", "train=4,externl=3"], "cohort 'externl' is not a synthetic cohort"),
        (["--sizes", "train=four"], "--sizes: 'train=four': the size must be a whole number"),
        (["--sizes", "train"], "--sizes: 'train' is not COHORT=SIZE"),
        (["--sizes", "train=4", "--stratify", "external"], "cohort 'external' has no cases"),
        (["--n", "5", "--sizes", "train=4"], "one way: --n, --paper-scale or --sizes"),
    ],
)
def test_synth_names_a_bad_design(tmp_path, options, message):
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "c"), *options])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "c").exists()


def test_demo_config_is_the_two_arm_design(tmp_path):
    from ovfdlr.config import load_config
    from ovfdlr.demo import demo_weights, write_demo_config

    path = write_demo_config(tmp_path, tmp_path / "cohort" / "manifest.csv", seed=3, jobs=1)
    config = load_config(path)
    assert [arm.name for arm in config.arms] == ["radiomics", "deep"]
    assert config.arms[0].deep is None and config.arms[1].deep is not None
    weights, pretrained = demo_weights()
    assert config.arms[1].deep.weights == weights
    assert pretrained == (weights == "imagenet")
    assert config.pairs() == [("deep", "radiomics")] and config.seed == 3
    assert config.evaluation.nested_cv is None and config.evaluation.nested_folds == 3
    assert all(config.nested_cv_for(arm)[0] for arm in config.arms)
    path = write_demo_config(tmp_path, tmp_path / "m.csv", nested_cv=False)  # --no-nested-cv
    config = load_config(path)
    assert config.evaluation.nested_cv is False
    assert not any(config.nested_cv_for(arm)[0] for arm in config.arms)


def test_demo_refuses_contradictory_sizes(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--n", "6", "--paper-scale"])
    assert result.exit_code == 1 and "one way: --n, --paper-scale or --sizes" in result.output


def test_demo_cohort_has_every_class_in_every_validation_cohort():
    """The default demo's design: 8 cases of each class in external and prospective."""
    from ovfdlr.demo import DEMO_STRATIFIED, PER_CLASS, demo_sizes
    from ovfdlr.synthetic.design import CohortDesign, draw_population, synthetic_labels

    for labels in ("astlof", "genant", "binary"):
        design = CohortDesign.of(sizes=demo_sizes(labels), stratify=DEMO_STRATIFIED, labels=labels)
        pop = draw_population(design, seed=0)
        table = pd.crosstab(pop["cohort"], synthetic_labels(pop, labels))
        for cohort in DEMO_STRATIFIED:
            assert (table.loc[cohort] == PER_CLASS).all(), (labels, table)
        assert (table.loc[["train", "internal"]] >= 1).all().all(), (labels, table)


def test_cli_reference_is_current():
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "typer",
            "ovfdlr.cli",
            "utils",
            "docs",
            "--name",
            "ovfdlr",
            "--title",
            "ovfdlr command line",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    written = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert generated.strip() == written.strip(), "docs/cli.md is stale: run `make docs`"
