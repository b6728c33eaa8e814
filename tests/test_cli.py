"""The command line: version, help, the synthetic cohort and the demo, and its reference page."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
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
    assert "either --n or --paper-scale" in result.output


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


def test_demo_refuses_contradictory_sizes(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--n", "6", "--paper-scale"])
    assert result.exit_code == 1 and "either --n or --paper-scale" in result.output


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
    written = (REPO / "docs" / "cli.md").read_text()
    assert generated.strip() == written.strip(), "docs/cli.md is stale: run `make docs`"
