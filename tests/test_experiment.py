"""The main job: config errors, a small end-to-end run, resume, bundles and prediction."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from ovfdlr.bundle import BundleError, load_bundle
from ovfdlr.cli import app
from ovfdlr.config import ConfigError, load_config, parse_config
from ovfdlr.predict import predict

runner = CliRunner()

LIGHT_PARAMS = {
    "imageType": {"Original": {}},
    "featureClass": {"shape": None, "firstorder": None, "glcm": None},
    "setting": {"resampledPixelSpacing": [1, 1, 1], "binWidth": 25, "preCrop": True},
}


def small_experiment(folder: Path, cohort_manifest: Path, cache: Path) -> Path:
    """Two arms (radiomics + morphometry; the same with untrained ResNet-50 features, PCA 8),
    two quick classifiers, light radiomics settings, no nested cross-validation (the binary
    run of test_labels.py is the end-to-end run with it)."""
    (folder / "light.yaml").write_text(yaml.safe_dump(LIGHT_PARAMS))
    config = {
        "name": "small",
        "manifest": str(cohort_manifest),
        "radiomics": {"params": "light.yaml"},
        "arms": [
            {"name": "radiomics"},
            {"name": "deep", "deep": {"weights": "random:0", "pca": 8}},
        ],
        "models": {"classifiers": ["lr", "rf"], "quick": True, "folds": 3},
        "evaluation": {"nested_cv": False},
        "seed": 0,
        "jobs": 2,
        "cache": str(cache),
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def cohort_60(synthetic_60) -> Path:
    return synthetic_60 / "manifest.csv"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cohort_60):
    folder = tmp_path_factory.mktemp("experiment")
    config = small_experiment(folder, cohort_60, folder / "cache")
    result = runner.invoke(app, ["run", str(config), "--out", str(folder / "run")])
    assert result.exit_code == 0, result.output
    return folder, folder / "run", result.output


def stage_statuses(run: Path) -> dict[str, str]:
    """Each stage's status (computed / cached / ...) in a run's run.json."""
    return {s["name"]: s["status"] for s in json.loads((run / "run.json").read_text())["stages"]}


def test_config_errors_name_the_key(tmp_path):
    base = {"manifest": "m.csv", "arms": [{"name": "a"}, {"name": "b"}]}
    cases = [
        ({"arms": base["arms"]}, "manifest: required key is missing"),
        (base | {"seed": "seven"}, "seed: Input should be a valid integer"),
        (
            base | {"arms": [{"name": "a", "deep": {"weights": "random:0", "margin": "wide"}}]},
            "arms.0.deep.margin",
        ),
        (base | {"compare": [["a", "c"]]}, "compare.0.1: unknown arm 'c' (arms: a, b)"),
        (base | {"models": {"classifiers": ["lr", "svn"]}}, "models.classifiers.1"),
        (base | {"arms": [{"name": "a", "radiomcs": False}]}, "arms.0.radiomcs: unknown key"),
    ]
    for data, needle in cases:
        with pytest.raises(ConfigError) as info:
            parse_config(data, "exp.yaml")
        assert needle in str(info.value), (needle, str(info.value))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(base | {"compare": [["a", "nope"]]}))
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "compare.0.1: unknown arm 'nope'" in result.output and "Traceback" not in result.output
    path.write_text("arms: [\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(path)


def test_relative_paths_resolve_against_the_config(tmp_path):
    path = tmp_path / "sub" / "exp.yaml"
    path.parent.mkdir()
    path.write_text(
        yaml.safe_dump(
            {
                "manifest": "cohort/manifest.csv",
                "arms": [{"name": "a", "deep": {"weights": "radimagenet:w/RadImageNet.h5"}}],
            }
        )
    )
    config = load_config(path)
    assert config.manifest == (tmp_path / "sub" / "cohort" / "manifest.csv").resolve()
    assert (
        config.arms[0].deep.weights
        == f"radimagenet:{(tmp_path / 'sub' / 'w' / 'RadImageNet.h5').resolve()}"
    )
    assert config.pairs() == []


@pytest.mark.slow
def test_small_end_to_end_run(finished_run):
    _, run, output = finished_run
    payload = json.loads((run / "run.json").read_text())
    assert [s["name"] for s in payload["stages"]][:4] == [
        "cohort",
        "radiomics",
        "morphometry",
        "deep-deep",
    ]
    assert payload["arms"]["deep"]["deep"]["pretrained"] is False
    assert "UNTRAINED" in output
    for name in (
        "config.yaml",
        "run.log",
        "report.html",
        "tables/cohort_classes.csv",
        "tables/comparison.csv",
        "figures/inputs-001.png",
        "arms/radiomics/arm.json",
        "arms/deep/predictions.parquet",
        "bundles/deep/bundle.json",
        "bundles/radiomics/model.skops",
        "features/radiomics.parquet",
        "features/deep-deep.parquet",
    ):
        assert (run / name).exists(), name
    comparison = pd.read_csv(run / "tables" / "comparison.csv")
    assert comparison["p_value"].dropna().between(0, 1).all()
    deep = pd.read_parquet(run / "features" / "deep-deep.parquet")
    assert deep.shape[1] == 8 and deep.columns[0] == "dtl-deep_pc000"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["compare"] == [["radiomics", "deep"]]
    from ovfdlr.experiment import summary_table  # what `ovfdlr run` prints

    table = summary_table(run, payload)
    nested = table[table["cohort"] == "train (nested cv)"]
    assert list(nested["arm"]) == ["radiomics", "deep"]
    assert set(nested["macro AUC (95% CI)"]) == {
        "not run: switched off (evaluation.nested_cv: false)"
    }
    assert list(table["cohort"])[:4] == [
        "train (apparent)",
        "train (out-of-fold)",
        "train (nested cv)",
        "internal",
    ]


@pytest.mark.slow
def test_report_renders_in_a_real_browser(finished_run, tmp_path):
    from ovfdlr.report.browser import check_report

    _, run, _ = finished_run
    html = (run / "report.html").read_text()
    assert "Limitations" in html and "untrained" in html.lower()
    result = check_report(run / "report.html", tmp_path / "report.png")
    assert result.images_total > 10
    assert result.images_loaded == result.images_total, result
    assert result.script_errors == []
    assert (tmp_path / "report.png").stat().st_size > 10_000


@pytest.mark.slow
def test_rerun_is_cached_and_a_changed_setting_redoes_only_its_stages(finished_run, tmp_path):
    import shutil

    folder, reference, _ = finished_run
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    config = yaml.safe_load((folder / "experiment.yaml").read_text())
    # settings that change nothing in the results: batch size and worker processes
    config["arms"][1]["deep"]["batch_size"] = 3
    config["jobs"] = 1
    harmless = folder / "harmless.yaml"
    harmless.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["run", str(harmless), "--out", str(run)])
    assert result.exit_code == 0, result.output
    statuses = stage_statuses(run)
    assert all(v == "cached" for k, v in statuses.items() if k != "report"), statuses
    config["arms"][1]["deep"]["pca"] = 6
    changed = folder / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["run", str(changed), "--out", str(run)])
    assert result.exit_code == 0, result.output
    statuses = stage_statuses(run)
    assert statuses["radiomics"] == statuses["arm-radiomics"] == "cached"
    assert statuses["deep-deep"] == statuses["arm-deep"] == "computed"
    assert pd.read_parquet(run / "features" / "deep-deep.parquet").shape[1] == 6


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_result(finished_run, tmp_path):
    folder, reference, _ = finished_run
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "ovfdlr",
        "run",
        str(folder / "experiment.yaml"),
        "--out",
        str(out),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    log = out / "run.log"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if log.is_file() and "stage arm-radiomics: computing" in log.read_text():
            break
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before it could be killed"
    time.sleep(1.0)  # in the middle of training the first arm
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "arms" / "deep" / "arm.json").exists()
    # the stage that was killed has no key: it cannot pass for finished
    keys = json.loads((out / ".stage-keys.json").read_text())
    assert "radiomics" in keys and "arm-radiomics" not in keys
    subprocess.run(command, check=True, capture_output=True)
    for name in ("arms/radiomics/predictions.parquet", "arms/deep/predictions.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(out / name), pd.read_parquet(reference / name)
        )
    for name in (
        "arms/radiomics/tables/performance.csv",
        "arms/deep/tables/selected_features.csv",
        "tables/comparison.csv",
    ):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.slow
def test_bundle_round_trip_and_prediction(finished_run, tmp_path):
    _, run, _ = finished_run
    bundle = load_bundle(run / "bundles" / "deep")
    preds = pd.read_parquet(run / "arms" / "deep" / "predictions.parquet")
    chosen = bundle.meta["classifier"]
    apparent = (preds["cohort"] == "train") & (preds["scoring"] == "apparent")
    train = preds[(preds["classifier"] == chosen) & apparent].head(2)
    from ovfdlr.cohort import load_manifest

    cohort = load_manifest(yaml.safe_load((run / "config.yaml").read_text())["manifest"])
    table, failures = predict(bundle, cohort.loc[train.index], cache_dir=False)
    assert failures.empty
    np.testing.assert_allclose(
        table[["p0", "p1", "p2"]].to_numpy(),
        train[["p0", "p1", "p2"]].to_numpy(),
        rtol=0,
        atol=1e-9,
    )
    assert len(table["contributions"].iloc[0]) == 5

    case = cohort.loc[train.index[0]]
    out = tmp_path / "new"
    result = runner.invoke(
        app,
        [
            "predict",
            str(run / "bundles" / "deep"),
            "--image",
            case["image"],
            "--mask",
            case["mask"],
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    written = json.loads(out.with_suffix(".json").read_text())
    assert written[0]["predicted_class"] == int(np.argmax(train[["p0", "p1", "p2"]].iloc[0]))
    assert {"feature", "value", "shap"} == set(written[0]["contributions"][0])
    assert out.with_suffix(".csv").is_file()

    # the vertebra by name: the synthetic masks label the body 1, VerSe's number of C1
    named = tmp_path / "named"
    common = ["predict", str(run / "bundles" / "deep"), "--image", case["image"]]
    common += ["--mask", case["mask"]]
    result = runner.invoke(
        app, [*common, "--vertebra", "C1", "--numbering", "verse", "--out", str(named)]
    )
    assert result.exit_code == 0, result.output
    again = json.loads(named.with_suffix(".json").read_text())
    assert again[0]["case_id"].endswith("_C1")
    assert [again[0][c] for c in ("p0", "p1", "p2")] == [written[0][c] for c in ("p0", "p1", "p2")]
    result = runner.invoke(app, [*common, "--vertebra", "L9", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "--vertebra" in result.output and "L9" in result.output


@pytest.mark.slow
def test_features_computed_in_background_processes_are_the_same(finished_run):
    """``ovfdlr predict`` computes features in spawned processes while the model loads: the
    features must be exactly those computed in the calling process."""
    from ovfdlr.cohort import load_manifest
    from ovfdlr.predict import case_features, start_features

    _, run, _ = finished_run
    bundle = load_bundle(run / "bundles" / "deep", model=False)
    assert bundle.model is None and bundle.background is None
    cohort = load_manifest(yaml.safe_load((run / "config.yaml").read_text())["manifest"])
    cases = cohort.iloc[[0, 7, 30]]
    inline, inline_failures = case_features(bundle, cases, cache_dir=False)
    # with worker pools inside the background processes, which must not outlive their work
    job = start_features(bundle, cases, cache_dir=False, jobs=2, background=True)
    features, failures = job.result()
    assert list(features.columns) == bundle.meta["input_columns"]
    assert any(c.startswith("dtl-") for c in features.columns)
    pd.testing.assert_frame_equal(features, inline, check_exact=True)
    assert failures.empty and inline_failures.empty


@pytest.mark.slow
def test_a_failing_background_process_stops_the_others(finished_run, tmp_path):
    """Deep weights that are not the bundle's fail in their process: the error reaches the
    caller as raised there, and the radiomics process still working is stopped."""
    import shutil

    from ovfdlr.bundle import _checksum
    from ovfdlr.cohort import load_manifest
    from ovfdlr.predict import start_features

    _, run, _ = finished_run
    copy = tmp_path / "bundle"
    shutil.copytree(run / "bundles" / "deep", copy)
    meta = json.loads((copy / "bundle.json").read_text())
    meta["feature_sets"]["deep"]["weights_sha256"] = "0" * 64
    meta["checksum"] = _checksum(meta)
    (copy / "bundle.json").write_text(json.dumps(meta))
    bundle = load_bundle(copy, model=False)
    cohort = load_manifest(yaml.safe_load((run / "config.yaml").read_text())["manifest"])
    job = start_features(bundle, cohort.iloc[:20], cache_dir=False, background=True)
    processes = [call.process for call in job._calls]
    with pytest.raises(BundleError, match="are not those the bundle was trained with"):
        job.result()
    assert not any(p.is_alive() for p in processes)


@pytest.mark.slow
def test_tampered_bundles_are_refused(finished_run, tmp_path):
    import shutil

    _, run, _ = finished_run
    copy = tmp_path / "bundle"
    shutil.copytree(run / "bundles" / "radiomics", copy)
    model = copy / "model.skops"
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(BundleError, match=r"model\.skops: modified since the bundle was written"):
        load_bundle(copy)
    result = runner.invoke(app, ["predict", str(copy), "--image", "x.nii.gz", "--mask", "y.nii.gz"])
    assert result.exit_code == 1 and "modified since the bundle was written" in result.output
    (copy / "bundle.json").write_text("{}")
    with pytest.raises(BundleError, match="not an ovfdlr bundle"):
        load_bundle(copy)


@pytest.mark.parametrize("name", ["paper", "radiomics-only", "finetuned", "dask-cluster"])
def test_example_configs_are_valid(name):
    from .conftest import REPO

    config = load_config(REPO / "examples" / f"{name}.yaml")
    assert config.arms
    if name == "paper":
        assert [a.name for a in config.arms] == ["radimagenet", "imagenet"]
        assert config.pairs() == [("radimagenet", "imagenet")]
        assert config.arms[0].deep.weights.startswith("radimagenet:/")


@pytest.mark.slow
def test_tampered_metadata_and_escaping_names_are_refused(finished_run, tmp_path):
    import shutil

    _, run, _ = finished_run
    copy = tmp_path / "bundle"
    shutil.copytree(run / "bundles" / "deep", copy)
    meta = json.loads((copy / "bundle.json").read_text())
    meta["feature_sets"]["deep"]["input"]["margin"] = 0.5  # a changed setting
    (copy / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="checksum differs"):
        load_bundle(copy)
    from ovfdlr.bundle import _checksum

    meta["feature_sets"]["deep"]["pca"] = "../pca.npz"
    meta["checksum"] = _checksum(meta)
    (copy / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="points outside the bundle"):
        load_bundle(copy)


@pytest.mark.slow
def test_predict_reports_a_case_that_cannot_be_scored(finished_run, tmp_path):
    import SimpleITK as sitk

    _, run, _ = finished_run
    cohort_dir = Path(yaml.safe_load((run / "config.yaml").read_text())["manifest"]).parent
    image = sorted((cohort_dir / "images").glob("*.nii.gz"))[0]
    empty = sitk.Image(sitk.ReadImage(str(image)).GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(sitk.ReadImage(str(image)))
    sitk.WriteImage(empty, str(tmp_path / "empty.nii.gz"))
    result = runner.invoke(
        app,
        [
            "predict",
            str(run / "bundles" / "radiomics"),
            "--image",
            str(image),
            "--mask",
            str(tmp_path / "empty.nii.gz"),
            "--out",
            str(tmp_path / "p"),
            "--cache",
            str(tmp_path / "c"),
        ],
    )
    assert result.exit_code == 1
    assert "failed" in result.output and "no case could be scored" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_finetuned_arm_bundle_round_trip(cohort_60, tmp_path):
    """A fine-tuned, PCA-reduced deep arm with a normalisation override predicts a training
    case exactly as the run did; the fine-tuning never sees a non-training row."""
    from ovfdlr.cohort import load_manifest

    config = {
        "name": "tuned",
        "manifest": str(cohort_60),
        "arms": [
            {
                "name": "tuned",
                "radiomics": False,
                "morphometry": False,
                "deep": {
                    "weights": "random:0",
                    "pca": 4,
                    "finetune_epochs": 1,
                    "normalization": "radimagenet-torch",
                    "gradcam_cases": 2,
                },
            }
        ],
        "models": {"classifiers": ["lr"], "quick": True, "folds": 3, "explain": False},
        "preview": False,
        "jobs": 2,
        "cache": str(tmp_path / "cache"),
    }
    path = tmp_path / "tuned.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    nested = json.loads((run / "arms" / "tuned" / "arm.json").read_text())["nested_cv"]
    assert not nested["ran"] and "not run for a fine-tuned arm" in nested["reason"]
    bundle = load_bundle(run / "bundles" / "tuned")
    assert {"finetuned.safetensors", "pca.npz"} <= set(bundle.meta["files"])
    assert bundle.meta["feature_sets"]["deep"]["normalization"] == "radimagenet-torch"
    assert len(list((run / "features" / "gradcam-tuned").glob("*.png"))) == 2
    preds = pd.read_parquet(run / "arms" / "tuned" / "predictions.parquet")
    train = preds[(preds["classifier"] == "lr") & (preds["cohort"] == "train")].head(2)
    cohort = load_manifest(cohort_60)
    table, _ = predict(bundle, cohort.loc[train.index], cache_dir=False)
    np.testing.assert_allclose(
        table[["p0", "p1", "p2"]].to_numpy(),
        train[["p0", "p1", "p2"]].to_numpy(),
        rtol=0,
        atol=1e-9,
    )
    from safetensors.torch import load_file

    weights = load_file(run / "features" / "finetuned-tuned.safetensors")

    # other labels outside the training cohort: the same fine-tuned network
    changed = pd.read_csv(cohort_60)
    outside = changed["cohort"] != "train"
    changed.loc[outside, "label"] = (changed.loc[outside, "label"] + 1) % 3
    changed.to_csv(tmp_path / "manifest.csv", index=False)
    for column in ("image", "mask"):
        changed[column] = [str(cohort_60.parent / v) for v in changed[column]]
    changed.to_csv(tmp_path / "manifest.csv", index=False)
    config["manifest"] = str(tmp_path / "manifest.csv")
    config["cache"] = str(tmp_path / "cache2")
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "run2")])
    assert result.exit_code == 0, result.output
    again = load_file(tmp_path / "run2" / "features" / "finetuned-tuned.safetensors")
    assert again.keys() == weights.keys()
    for name, tensor in weights.items():  # bit-identical (the file's header order may vary)
        assert torch.equal(again[name], tensor), name


@pytest.mark.slow
def test_results_equal_the_recorded_reference(finished_run, tmp_path):
    """The small run's tables equal those recorded on main before the label-scheme and
    run-folder changes (tests/reference/README.md); a changed number is caught."""
    import shutil

    from tests.reference_tables import differences

    reference = Path(__file__).parent / "reference" / "small-run"
    _, run, _ = finished_run
    assert differences(reference, run) == []
    copy = tmp_path / "run"
    shutil.copytree(run / "tables", copy / "tables")
    shutil.copytree(run / "arms", copy / "arms")
    table = copy / "arms" / "deep" / "tables" / "performance.csv"
    frame = pd.read_csv(table)
    frame.loc[0, "macro_auc"] += 1e-6
    frame.to_csv(table, index=False)
    found = differences(reference, copy)
    assert len(found) == 1 and "performance.csv: column macro_auc" in found[0]


@pytest.mark.slow
def test_a_relabelled_case_retrains_the_arms_and_keeps_the_features(finished_run, tmp_path):
    """Labels and cohorts are not in the feature tables: changing one case's label must redo
    the arms (not serve them from the cache) while every per-case feature stage stays cached."""
    import shutil

    folder, reference, _ = finished_run
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    config = yaml.safe_load((folder / "experiment.yaml").read_text())
    manifest = Path(config["manifest"])
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    first = table.index[table["cohort"] == "train"][0]
    table.loc[first, "label"] = str((int(table.loc[first, "label"]) + 1) % 3)
    relabelled = manifest.with_name("manifest-relabelled.csv")  # beside it: same relative paths
    table.to_csv(relabelled, index=False)
    config["manifest"] = str(relabelled)
    path = folder / "relabelled.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["run", str(path), "--out", str(run)])
    assert result.exit_code == 0, result.output
    statuses = stage_statuses(run)
    assert statuses["radiomics"] == statuses["morphometry"] == statuses["deep-deep"] == "cached"
    assert statuses["cohort"] == statuses["arm-radiomics"] == statuses["arm-deep"] == "computed"
    preds = pd.read_parquet(run / "arms" / "radiomics" / "predictions.parquet")
    case = table.loc[first, "case_id"]
    assert int(preds.loc[[case], "label"].iloc[0]) == int(table.loc[first, "label"])


def test_the_recorded_demo_has_an_estimate_and_a_ci_on_every_cohort():
    """`ovfdlr demo`'s recorded tables (tests/reference/demo; checked against a fresh demo run
    with tests/reference_tables.py): with 8 cases of every class in external and prospective,
    every classifier of both arms has a macro AUC with a 95% CI on every cohort and view, and
    the primary endpoint has a test on each of its cohorts. This checks the demo's design
    (which cohorts can be estimated), on data that also chose the models."""
    reference = Path(__file__).parent / "reference" / "demo"
    classes = pd.read_csv(reference / "cohort_classes.csv").set_index("cohort")
    for cohort in ("external", "prospective"):
        assert (classes.loc[cohort, ["class 0", "class 1", "class 2"]] == 8).all()
    for arm in ("radiomics", "deep"):
        performance = pd.read_csv(reference / arm / "performance.csv")
        views = set(zip(performance["cohort"], performance["scoring"], strict=True))
        assert views == {
            ("train", "apparent"),
            ("train", "out-of-fold"),
            ("train", "nested-cv"),
            ("internal", "held-out"),
            ("external", "held-out"),
            ("prospective", "held-out"),
        }
        values = performance[["macro_auc", "macro_auc_lower", "macro_auc_upper"]]
        assert values.notna().all().all(), performance[values.isna().any(axis=1)]
        assert performance["note"].isna().all()
    comparison = pd.read_csv(reference / "comparison.csv")
    primary = comparison[
        (comparison["family"] == "primary") & (comparison["test"] == "macro (DeLong)")
    ]
    assert sorted(primary["cohort"]) == ["external", "prospective"]
    assert primary["p_adjusted"].between(0, 1).all() and primary["ci_lower"].notna().all()
