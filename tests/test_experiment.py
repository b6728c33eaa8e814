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
        "models": {"classifiers": ["lr", "knn"], "quick": True, "folds": 3},
        "evaluation": {"nested_cv": False},
        "seed": 0,
        "jobs": 2,
        "cache": str(cache),
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def cohort_60(synthetic_60, tmp_path_factory) -> Path:
    """The 60-vertebra synthetic cohort, its first case's CT given as a DICOM series whose
    headers carry patient identifiers (the same voxels and grid), so that every output of the
    runs below can be searched for them."""
    import SimpleITK as sitk

    from .dicom_fixtures import write_ct_series

    folder = tmp_path_factory.mktemp("cohort60-dicom")
    table = pd.read_csv(synthetic_60 / "manifest.csv", dtype=str, keep_default_na=False)
    for column in ("image", "mask"):
        table[column] = [str(synthetic_60 / v) for v in table[column]]
    ct = sitk.ReadImage(table.loc[0, "image"])
    assert ct.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    series = folder / f"{table.loc[0, 'case_id']}-series"
    write_ct_series(
        series,
        sitk.GetArrayFromImage(ct),
        # a DICOM decimal string holds 16 characters: 14 significant digits keep the grid
        # within 1e-12 mm of the NIfTI's, so the run's numbers stay those recorded
        spacing=[float(f"{v:.14g}") for v in ct.GetSpacing()],
        origin=[float(f"{v:.14g}") for v in ct.GetOrigin()],
    )
    table.loc[0, "image"] = str(series)
    table.to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cohort_60):
    folder = tmp_path_factory.mktemp("experiment")
    config = small_experiment(folder, cohort_60, folder / "cache")
    result = runner.invoke(app, ["run", str(config), "--out", str(folder / "run")])
    assert result.exit_code == 0, result.output
    return folder, folder / "run", result.output


def stage_statuses(run: Path) -> dict[str, str]:
    """Each stage's status (computed / cached / ...) in a run's run.json."""
    return {
        s["name"]: s["status"]
        for s in json.loads((run / "run.json").read_text(encoding="utf-8"))["stages"]
    }


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
    payload = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert [s["name"] for s in payload["stages"]][:4] == [
        "cohort",
        "radiomics",
        "morphometry",
        "deep-deep",
    ]
    assert payload["arms"]["deep"]["deep"]["pretrained"] is False
    assert "UNTRAINED" in output
    # deep.device defaults to auto: CUDA when torch sees it, else the CPU with a note
    from ovfdlr.deep.device import cuda_available

    deep = payload["arms"]["deep"]["deep"]
    assert deep["device_requested"] == "auto" and deep["mixed_precision"] is False
    report = (run / "report.html").read_text(encoding="utf-8")
    if cuda_available():
        assert deep["device"] == "cuda" and deep["device_note"] is None
        assert "computed on a CUDA GPU" in report
    else:
        assert deep["device"] == "cpu"
        assert "no CUDA device here, the deep features ran on the CPU" in deep["device_note"]
        assert "computed on the CPU (arms.1.deep.device (deep) auto: no CUDA" in report
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
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
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
@pytest.mark.usefixtures("chromium")
def test_report_renders_in_a_real_browser(finished_run, tmp_path):
    from ovfdlr.report.browser import check_report

    _, run, _ = finished_run
    html = (run / "report.html").read_text(encoding="utf-8")
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
    config = yaml.safe_load((folder / "experiment.yaml").read_text(encoding="utf-8"))
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


def _run_and_kill(command: list[str], out: Path, line: str, delay: float) -> str:
    """Start ``command`` (``ovfdlr run``), SIGKILL it and its workers ``delay`` seconds after
    ``line`` appears in its run.log; return what it logged."""
    log = out / "run.log"
    before = len(log.read_text(encoding="utf-8")) if log.is_file() else 0  # run.log is appended to
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if log.is_file() and line in log.read_text(encoding="utf-8")[before:]:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"the run ended before it could be killed at '{line}'"
    time.sleep(delay)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return log.read_text(encoding="utf-8")[before:]


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_result(finished_run, tmp_path):
    """Killed in a feature stage, in training and in the report: a stage killed half-way has
    no key and is computed again, and the resumed run equals an uninterrupted one."""
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

    def keys() -> dict:
        return json.loads((out / ".stage-keys.json").read_text(encoding="utf-8"))

    log = _run_and_kill(command, out, "stage deep-deep: computing", 1.0)
    assert "stage deep-deep: computed" not in log  # killed in the middle of the deep features
    assert "radiomics" in keys() and "deep-deep" not in keys()
    log = _run_and_kill(command, out, "stage arm-radiomics: computing", 1.0)
    assert "took over the lock" in log  # the killed run's, with its pid
    assert "stage deep-deep: computed" in log  # done again, not taken for finished
    assert not (out / "arms" / "deep" / "arm.json").exists()
    assert "deep-deep" in keys() and "arm-radiomics" not in keys()
    log = _run_and_kill(command, out, "stage report: computing", 0.0)
    assert "run complete" not in log
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["status"] == "running"
    assert not (out / "report.html").exists()  # written whole or not at all
    subprocess.run(command, check=True, capture_output=True)
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["status"] == "complete"
    assert (out / "report.html").is_file() and not (out / ".run.lock").exists()
    assert not [p for p in out.rglob(".*") if p.name.endswith(".tmp")]
    for name in (
        "arms/radiomics/predictions.parquet",
        "arms/deep/predictions.parquet",
        "features/deep-deep.parquet",
    ):
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
def test_a_write_without_space_fails_its_stage_and_the_rerun_resumes(
    finished_run, tmp_path, monkeypatch
):
    import errno
    import shutil

    from ovfdlr.runlock import RunLock

    folder, reference, _ = finished_run
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    target = run / "tables" / "comparison.csv"
    target.unlink()
    command = ["run", str(folder / "experiment.yaml"), "--out", str(run)]
    with RunLock(run):  # another process writing the folder: refused, and it is named
        result = runner.invoke(app, command)
    assert result.exit_code == 1 and "is in use by another run" in result.output
    assert f"pid {os.getpid()}, started " in result.output and "Traceback" not in result.output

    to_csv = pd.DataFrame.to_csv

    def full_disk(self, path=None, *args, **kwargs):
        if path is not None and "comparison.csv" in str(path):
            Path(path).write_text("arm_a,arm_b\nradiomics,")  # half a table, then no space
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return to_csv(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    result = runner.invoke(app, command)
    monkeypatch.undo()
    assert result.exit_code == 1
    reason = f"cannot write {target}: no space left on device"
    assert f"error: stage compare failed: {reason}" in result.output
    assert "Traceback" not in result.output
    assert not target.exists() and not list(target.parent.glob(".*.tmp"))
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert (record["status"], record["failed_stage"], record["error"]) == (
        "failed",
        "compare",
        reason,
    )
    assert f"ERROR ovfdlr.run: stage compare failed: {reason}" in (run / "run.log").read_text(
        encoding="utf-8"
    )
    assert "compare" not in json.loads((run / ".stage-keys.json").read_text(encoding="utf-8"))
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert stage_statuses(run)["compare"] == "computed"
    assert json.loads((run / "run.json").read_text(encoding="utf-8"))["status"] == "complete"
    assert target.read_bytes() == (reference / "tables" / "comparison.csv").read_bytes()


@pytest.mark.slow
def test_bundle_round_trip_and_prediction(finished_run, tmp_path):
    _, run, _ = finished_run
    bundle = load_bundle(run / "bundles" / "deep")
    preds = pd.read_parquet(run / "arms" / "deep" / "predictions.parquet")
    chosen = bundle.meta["classifier"]
    apparent = (preds["cohort"] == "train") & (preds["scoring"] == "apparent")
    train = preds[(preds["classifier"] == chosen) & apparent].head(2)
    from ovfdlr.cohort import load_manifest

    cohort = load_manifest(
        yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["manifest"]
    )
    table, failures = predict(bundle, cohort.loc[train.index], cache_dir=False)
    assert failures.empty
    # the bundle names its radiomics engine; predict computes only the radiomics features the
    # model selected (those equal to the run's), the others are left missing and dropped by the
    # model's selection, so the probabilities below are the run's all the same
    from ovfdlr.predict import case_features, radiomics_columns, radiomics_needed

    radiomics_set = bundle.record.feature_sets.radiomics
    assert radiomics_set.engine == "native"
    assert radiomics_set.engine_version.startswith("native ")
    features, _ = case_features(bundle, cohort.loc[train.index], cache_dir=False)
    needed = radiomics_needed(bundle)
    assert 0 < len(needed) < len(radiomics_columns(bundle.record.input_columns))
    run_features = pd.read_parquet(run / "features" / "radiomics.parquet")
    pd.testing.assert_frame_equal(
        features[needed],
        run_features.loc[features.index, needed],
        check_exact=True,
        check_index_type=False,  # object or string ids, as the pandas version reads them
    )
    skipped = [c for c in radiomics_columns(bundle.record.input_columns) if c not in needed]
    assert features[skipped].isna().all().all()
    np.testing.assert_allclose(
        table[["p0", "p1", "p2"]].to_numpy(),
        train[["p0", "p1", "p2"]].to_numpy(),
        rtol=0,
        atol=1e-9,
    )
    assert len(table["contributions"].iloc[0]) == 5
    # training cases lie inside the training envelope
    assert not table["out_of_domain"].any()
    assert table["outside_envelope"].map(len).eq(0).all()

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
    written = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert written[0]["predicted_class"] == int(np.argmax(train[["p0", "p1", "p2"]].iloc[0]))
    assert {"feature", "value", "shap"} == set(written[0]["contributions"][0])
    assert out.with_suffix(".csv").is_file()
    # what produced it: the bundle, its classifier, untrained weights, class names, SHAP units
    from ovfdlr.cache import file_digest

    record = written[0]
    assert record["case_id"] == f"{Path(case['image']).name}:label1"
    assert record["bundle_sha256"] == file_digest(run / "bundles" / "deep" / "bundle.json")
    assert record["bundle"] == str((run / "bundles" / "deep").resolve())
    assert record["classifier"] == chosen and record["arm"] == "deep"
    assert (record["weights"], record["weights_state"]) == ("random:0", "untrained")
    assert [p["name"] for p in record["probabilities"]] == list(bundle.labels.names)
    assert record["explained_output"] in {"probability", "logit"}
    assert record["out_of_domain"] is False
    for needle in (record["bundle_sha256"], "UNTRAINED", "p(surgery) = ", "SHAP values in: "):
        assert needle in result.output, needle
    csv = pd.read_csv(out.with_suffix(".csv"))
    assert csv.loc[0, "weights_state"] == "untrained" and csv.loc[0, "classifier"] == chosen

    # the vertebra by name: the synthetic masks label the body 1, VerSe's number of C1
    common = ["predict", str(run / "bundles" / "deep"), "--image", case["image"]]
    common += ["--mask", case["mask"]]
    named = tmp_path / "pred.C1.whole"  # an --out name is kept as given
    result = runner.invoke(
        app, [*common, "--vertebra", "C1", "--numbering", "verse", "--out", str(named)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("pred.*")) == [
        "pred.C1.whole.csv",
        "pred.C1.whole.json",
    ]
    again = json.loads((tmp_path / "pred.C1.whole.json").read_text(encoding="utf-8"))
    assert again[0]["case_id"] == f"{Path(case['image']).name}:C1"
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
    cohort = load_manifest(
        yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["manifest"]
    )
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
    meta = json.loads((copy / "bundle.json").read_text(encoding="utf-8"))
    meta["feature_sets"]["deep"]["weights_sha256"] = "0" * 64
    meta["checksum"] = _checksum(meta)
    (copy / "bundle.json").write_text(json.dumps(meta))
    bundle = load_bundle(copy, model=False)
    cohort = load_manifest(
        yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["manifest"]
    )
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
        assert config.arms[0].deep.weights == "radimagenet"  # by name: ovfdlr weights import


@pytest.mark.slow
def test_tampered_metadata_and_escaping_names_are_refused(finished_run, tmp_path):
    import shutil

    _, run, _ = finished_run
    copy = tmp_path / "bundle"
    shutil.copytree(run / "bundles" / "deep", copy)
    meta = json.loads((copy / "bundle.json").read_text(encoding="utf-8"))
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
def test_no_dicom_identifier_reaches_any_output(finished_run, tmp_path):
    """The first case's CT is a DICOM series carrying a patient name, id, birth date, accession
    number and institution: none of them is in any file of the run folder (report, run.json,
    run.log, tables, predictions, bundles, errors) nor in a prediction of that case."""
    from .dicom_fixtures import IDENTIFIERS

    _, run, output = finished_run
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    table = pd.read_csv(config["manifest"], dtype=str, keep_default_na=False)
    series = Path(table.loc[0, "image"])
    assert series.is_dir() and len(list(series.glob("*.dcm"))) > 10
    words = [w.encode() for v in IDENTIFIERS.values() for w in v.replace("^", " ").split()]
    assert any(words[0] in p.read_bytes() for p in series.glob("*.dcm"))  # the input has them
    out = tmp_path / "case"
    bundle = str(run / "bundles" / "radiomics")
    command = ["predict", bundle, "--image", str(series), "--mask", table.loc[0, "mask"]]
    result = runner.invoke(app, [*command, "--out", str(out)])
    assert result.exit_code == 0, result.output
    files = [p for p in [*run.rglob("*"), *tmp_path.glob("case.*")] if p.is_file()]
    assert len(files) > 50 and any(p.name == "run.log" for p in files)
    texts = [output.encode(), result.output.encode()]
    leaks = [
        (str(p), w.decode())
        for p, data in [(None, t) for t in texts] + [(p, p.read_bytes()) for p in files]
        for w in words
        if w in data
    ]
    assert leaks == []


def test_bundles_carry_the_training_envelope_and_no_identifiers(finished_run, tmp_path):
    """A bundle travels: no file of it holds a case or patient id, an image path or a scan
    date of the manifest. Its envelope holds the training rows only, is covered by the
    checksum, and flags a case far outside it."""
    import shutil

    from ovfdlr.cohort import load_manifest
    from ovfdlr.predict import score
    from ovfdlr.selection import fuse

    _, run, _ = finished_run
    manifest = Path(yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["manifest"])
    rows = pd.read_csv(manifest, dtype=str)
    needles = {str(manifest.parent), str(manifest.parent.resolve())}
    for column in ("case_id", "patient_id", "scan_date", "image", "mask"):
        needles |= set(rows[column].dropna())
    for folder in sorted((run / "bundles").iterdir()):
        for path in folder.iterdir():
            data = path.read_bytes()
            found = [n for n in needles if n.encode() in data]
            assert not found, (path, found[:5])

    bundle = load_bundle(run / "bundles" / "radiomics")
    envelope = bundle.record.envelope
    cohort = load_manifest(manifest)
    train = cohort.index[cohort["cohort"] == "train"]
    assert envelope.rows == len(train)
    tables = [
        pd.read_parquet(run / "features" / f"{n}.parquet") for n in ("radiomics", "morphometry")
    ]
    features = fuse(tables)[bundle.record.input_columns]
    by_name = {q.name: q for q in envelope.quantities}
    assert [q.name for q in envelope.quantities if q.kind == "feature"] == bundle.meta[
        "selected_features"
    ]
    wider = 0
    for name in bundle.meta["selected_features"]:
        assert by_name[name].min == features.loc[train, name].min()
        assert by_name[name].max == features.loc[train, name].max()
        wider += (
            features[name].max() > by_name[name].max or features[name].min() < by_name[name].min
        )
    assert wider  # the other cohorts reach beyond some training ranges: they were left out
    assert by_name["spacing_slice_mm"].max == 1.0 and by_name["spacing_slice_mm"].n == len(train)
    assert by_name["air_hu"].n == 0  # crops around the spine: no air outside the body

    # a training case is inside; the same with 3-mm voxels and a feature far out is not
    case = features.loc[train[:1]]
    acquisition = pd.DataFrame(
        {q.name: [q.median] for q in envelope.quantities if q.kind == "acquisition"},
        index=case.index,
    )
    table = score(bundle, case, acquisition=acquisition)
    assert not table["out_of_domain"].iloc[0] and table["outside_envelope"].iloc[0] == []
    name = bundle.meta["selected_features"][0]
    far = case.copy()
    far[name] = by_name[name].max + 10 * (by_name[name].q3 - by_name[name].q1) + 1
    acquisition[["spacing_inplane_mm", "spacing_slice_mm"]] = 3.0
    table = score(bundle, far, acquisition=acquisition)
    assert table["out_of_domain"].iloc[0]
    outside = {e["quantity"]: e for e in table["outside_envelope"].iloc[0]}
    assert {name, "spacing_inplane_mm", "spacing_slice_mm"} <= set(outside)
    assert outside["spacing_slice_mm"]["training_max"] == 1.0 and outside[name]["far"]
    from ovfdlr.predict import describe

    assert "OUTSIDE THE MODEL'S DOMAIN" in describe(bundle, table.iloc[0])
    assert table["weights"].iloc[0] is None  # no deep features

    # the envelope is part of the checksummed metadata: a widened range is refused
    copy = tmp_path / "bundle"
    shutil.copytree(run / "bundles" / "radiomics", copy)
    meta = json.loads((copy / "bundle.json").read_text(encoding="utf-8"))
    meta["envelope"]["quantities"][0]["max"] = 1e9
    (copy / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="checksum differs"):
        load_bundle(copy, model=False)
    # a bundle written before bundles had an envelope still scores, and says it was not checked
    from ovfdlr.bundle import _checksum

    del meta["envelope"]
    meta["checksum"] = _checksum(meta)
    (copy / "bundle.json").write_text(json.dumps(meta))
    older = load_bundle(copy)
    table = score(older, case)
    assert table["out_of_domain"].isna().all()
    assert "domain not checked" in describe(older, table.iloc[0])


@pytest.mark.slow
def test_predict_reports_a_case_that_cannot_be_scored(finished_run, tmp_path):
    import SimpleITK as sitk

    _, run, _ = finished_run
    manifest = pd.read_csv(
        yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["manifest"]
    )
    image = next(Path(p) for p in manifest["image"] if p.endswith(".nii.gz"))
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
    nested = json.loads((run / "arms" / "tuned" / "arm.json").read_text(encoding="utf-8"))[
        "nested_cv"
    ]
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
    config = yaml.safe_load((folder / "experiment.yaml").read_text(encoding="utf-8"))
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
