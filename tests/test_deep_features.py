"""DTL features: the table contract, cache, training-only PCA, fine-tuning and Grad-CAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from ovfdlr.cli import app
from ovfdlr.cohort import load_manifest
from ovfdlr.deep.backbones import load_backbone, load_finetuned
from ovfdlr.deep.features import column_names, extract_deep, training_pca
from ovfdlr.deep.finetune import (
    FinetuneSettings,
    _normalize_torch,
    finetune,
    holdout_split,
    prepare_data,
    save_finetuned,
)
from ovfdlr.deep.finetuned import read_finetuned
from ovfdlr.deep.inputs import InputSettings, prepare_case
from ovfdlr.labels import LabelError, binary, custom, genant

runner = CliRunner()


@pytest.fixture(scope="module")
def cohort(synthetic_cohort):
    return load_manifest(synthetic_cohort / "manifest.csv")


@pytest.fixture(scope="module")
def extracted(cohort, tmp_path_factory):
    cache = tmp_path_factory.mktemp("deep-cache")
    backbone = load_backbone("random:0")
    first = extract_deep(cohort, backbone, "demo", cache_dir=cache, jobs=2, progress=False)
    return backbone, cache, first


def test_feature_table_contract(extracted, cohort):
    _, _, result = extracted
    features = result.features
    assert features.shape == (48, 2048) and result.failed == 0
    assert list(features.columns) == column_names("demo")
    assert features.columns[0] == "dtl-demo_0000" and features.columns[-1] == "dtl-demo_2047"
    assert features.index.tolist() == cohort.index.tolist()
    assert (features.dtypes == "float64").all() and np.isfinite(features.to_numpy()).all()
    assert features.std().mean() > 0  # the cases differ
    assert (result.diagnostics["pretrained"] == "False").all()
    assert result.diagnostics["backbone"].str.contains("untrained").all()


def test_cached_rerun_and_determinism(extracted, cohort):
    backbone, cache, first = extracted
    again = extract_deep(cohort, backbone, "demo", cache_dir=cache, jobs=1, progress=False)
    assert (again.computed, again.cached) == (0, 48)
    pd.testing.assert_frame_equal(again.features, first.features, check_exact=True)
    fresh = extract_deep(
        cohort.iloc[:6],
        load_backbone("random:0"),
        "demo",
        cache_dir=False,
        batch_size=4,
        progress=False,
    )
    pd.testing.assert_frame_equal(fresh.features, first.features.iloc[:6], check_exact=True)
    other = extract_deep(
        cohort.iloc[:2],
        backbone,
        "demo",
        InputSettings(plane="axial"),
        cache_dir=cache,
        progress=False,
    )
    assert other.computed == 2  # new input settings, new key


def test_pca_sees_only_the_training_cohort(extracted, cohort):
    _, _, result = extracted
    pca = training_pca(result.features, cohort, 5)
    reduced = pca.transform(result.features)
    assert reduced.shape == (48, 5) and reduced.columns[0] == "dtl-demo_pc000"
    changed = result.features.copy()
    outside = cohort.index[cohort["cohort"] != "train"]
    changed.loc[outside] = changed.loc[outside] * 3 + 1  # any value of a non-training row
    again = training_pca(changed, cohort, 5)
    np.testing.assert_array_equal(again.components, pca.components)
    np.testing.assert_array_equal(again.mean, pca.mean)
    with pytest.raises(ValueError, match="needs at least as many 'train' cases"):
        training_pca(result.features, cohort, 500)


def test_holdout_groups_patients():
    labels = np.array([0, 1, 2] * 10)
    groups = np.repeat(np.arange(15), 2)
    train, hold = holdout_split(labels, groups, 0.2, seed=0)
    assert set(groups[train]).isdisjoint(groups[hold])
    assert len(hold) > 0 and len(train) + len(hold) == 30


@pytest.fixture(scope="module")
def untrained():
    """A seeded untrained ResNet-50 (fine-tuning copies it and leaves it as it is)."""
    return load_backbone("random:0")


def _inputs(cohort, size):
    train = cohort[cohort["cohort"] == "train"].iloc[:24]
    settings = InputSettings(size=size)
    images = np.stack(
        [prepare_case(r.image, r.mask, r.mask_label, settings).image for r in train.itertuples()]
    )
    return train, images


@pytest.fixture(scope="module")
def small_inputs(cohort):
    """24 training cases at 64 x 64 (Grad-CAM needs a last stage larger than 1 x 1)."""
    return _inputs(cohort, 64)


@pytest.fixture(scope="module")
def tiny_inputs(cohort):
    """The same cases at 32 x 32, the smallest input ResNet-50 takes (its last stage is 1 x 1):
    fine-tuning accepts any input size, and this one is about 4 times cheaper than 64 x 64."""
    return _inputs(cohort, 32)


def _training_loss(backbone, head, images, labels):
    model = torch.nn.Sequential(backbone.model, head).eval()
    with torch.inference_mode():
        logits = model(_normalize_torch(torch.from_numpy(images), backbone.normalization))
        return float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels)))


def test_finetuning_lowers_the_training_loss_and_is_deterministic(tiny_inputs, untrained, tmp_path):
    train, images = tiny_inputs
    labels = train["label"].astype(int).to_numpy()
    groups = train["patient_id"].to_numpy()
    settings = FinetuneSettings(
        epochs=2,
        batch_size=8,
        learning_rate=1e-3,
        seed=1,
        rotation_deg=0,
        intensity_jitter=0,
        flips=False,
        patience=10,
    )
    base = untrained
    conv1 = base.model.conv1.weight.detach().clone()
    torch.manual_seed(1)
    untrained_head = torch.nn.Linear(2048, 3)
    result = finetune(base, images, labels, groups, settings)
    keep = np.setdiff1d(np.arange(len(labels)), result.holdout_index)
    before = _training_loss(base, untrained_head, images[keep], labels[keep])
    after = _training_loss(result.backbone, result.head, images[keep], labels[keep])
    assert after < before, (before, after)
    assert list(result.curve.columns) == [
        "epoch",
        "steps",
        "train_loss",
        "holdout_loss",
        "holdout_accuracy",
    ]
    assert result.curve["train_loss"].iloc[-1] < result.curve["train_loss"].iloc[0]
    # the base backbone is untouched
    torch.testing.assert_close(base.model.conv1.weight, conv1, rtol=0, atol=0)
    quick = FinetuneSettings(epochs=1, batch_size=8, seed=3, max_steps=2)
    one = finetune(base, images, labels, groups, quick)
    two = finetune(base, images, labels, groups, quick)
    torch.testing.assert_close(one.head.weight, two.head.weight, rtol=0, atol=0)

    path = save_finetuned(result, tmp_path / "finetuned-demo.safetensors")
    assert path.with_suffix(".curve.csv").is_file()
    loaded, head = load_finetuned(path)
    torch.testing.assert_close(head.weight, result.head.weight, rtol=0, atol=0)
    via_spec = load_backbone(f"file:{path}")
    x = torch.from_numpy(images[:2])
    with torch.inference_mode():
        torch.testing.assert_close(via_spec.model(x), result.backbone.model(x), rtol=0, atol=0)
        torch.testing.assert_close(loaded.model(x), result.backbone.model(x), rtol=0, atol=0)


def test_finetuning_needs_enough_patients(tiny_inputs, untrained):
    _, images = tiny_inputs
    with pytest.raises(ValueError, match="5 folds need at least 5 patients"):
        finetune(
            untrained,
            images[:4],
            np.array([0, 1, 2, 0]),
            np.array(["a", "a", "b", "b"]),
            FinetuneSettings(epochs=1),
        )


def _subset_manifest(synthetic_cohort: Path, folder: Path, n_train: int, n_other: int) -> Path:
    """The first ``n_train`` training and ``n_other`` other cases, with absolute paths."""
    table = pd.read_csv(synthetic_cohort / "manifest.csv")
    training = table["cohort"] == "train"
    table = pd.concat([table[training].head(n_train), table[~training].head(n_other)])
    for column in ("image", "mask"):
        table[column] = [str(synthetic_cohort / v) for v in table[column]]
    path = folder / "manifest.csv"
    table.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_extract_deep_command_with_finetuning_and_gradcam(synthetic_cohort, tmp_path):
    # 15 training cases (12 fine-tune, 3 hold out: one optimiser step) and 2 others for
    # Grad-CAM: the command end to end at the smallest size that has all of its parts
    manifest = _subset_manifest(synthetic_cohort, tmp_path, 15, 2)
    cohort = load_manifest(manifest)
    shown = cohort.index[cohort["cohort"] != "train"][:2].tolist()
    out = tmp_path / "features" / "deep-demo.parquet"
    args = [
        "extract",
        "deep",
        str(manifest),
        "--out",
        str(out),
        "--weights",
        "random:0",
        "--arm",
        "demo",
        "--finetune-epochs",
        "1",
        "--pca",
        "4",
        "--gradcam",
        shown[0],
        "--gradcam",
        shown[1],
        "--cache",
        str(tmp_path / "cache"),
        "--jobs",
        "2",
        "--batch-size",
        "8",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "untrained" in result.output
    table = pd.read_parquet(out)
    assert table.shape == (17, 4) and table.columns[0] == "dtl-demo_pc000"
    folder = out.parent
    assert (folder / "finetuned-demo.safetensors").is_file()
    assert (folder / "finetuned-demo.curve.csv").is_file()
    assert (folder / "pca-demo.npz").is_file()
    overlays = sorted((folder / "gradcam-demo").glob("*.png"))
    assert [p.name for p in overlays] == sorted(f"gradcam-{c}.png" for c in shown)
    # rerun: the fine-tuned weights are reused and the features come from the cache
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "reused" in again.output and "cached 17" in again.output
    pd.testing.assert_frame_equal(pd.read_parquet(out), table, check_exact=True)


def test_grad_cam_maps(small_inputs, untrained):
    from ovfdlr.deep.gradcam import grad_cam

    train, images = small_inputs
    result = finetune(
        untrained,
        images,
        train["label"].astype(int).to_numpy(),
        train["patient_id"].to_numpy(),
        FinetuneSettings(epochs=1, max_steps=1, seed=0),
    )
    maps = grad_cam(result.backbone, result.head, images[:3])
    assert maps.shape == (3, 64, 64)
    assert maps.min() >= 0 and maps.max() <= 1 and maps.std() > 0


@pytest.mark.parametrize(
    "scheme",
    [genant(), binary(), custom({2: "c", 0: "a", 1: "b"})],
    ids=["genant", "binary", "custom-order"],
)
def test_finetuning_head_follows_the_label_scheme(tiny_inputs, untrained, tmp_path, scheme):
    """One output per class of the scheme, in the scheme's order; the class values travel in
    the file and the head's size is read back from it."""
    train, images = tiny_inputs
    values = np.array([scheme.encode(str(v)) for v in train["label"].astype(int)])
    settings = FinetuneSettings(epochs=1, batch_size=8, max_steps=1, seed=0)
    data = prepare_data(images, values, train["patient_id"].to_numpy(), settings, scheme)
    np.testing.assert_array_equal(data.y.numpy(), [scheme.index(v) for v in values])
    result = finetune(
        untrained,
        images,
        values,
        train["patient_id"].to_numpy(),
        settings,
        scheme,
    )
    assert result.head.out_features == scheme.n_classes and result.classes == scheme.values
    path = save_finetuned(result, tmp_path / "finetuned.safetensors")
    saved = read_finetuned(path)
    assert saved.classes == scheme.values and saved.n_classes == scheme.n_classes
    _, head = load_finetuned(path)
    torch.testing.assert_close(head.weight, result.head.weight, rtol=0, atol=0)
    with pytest.raises(LabelError, match="class 7 is not in the scheme"):
        finetune(
            untrained,
            images[:2],
            np.array([7, values[1]]),
            np.array(["a", "b"]),
            settings,
            scheme,
        )


def test_extract_deep_bad_weights_is_one_line(synthetic_cohort, tmp_path):
    args = [
        "extract",
        "deep",
        str(synthetic_cohort / "manifest.csv"),
        "--out",
        str(tmp_path / "x.parquet"),
        "--weights",
        f"radimagenet:{tmp_path / 'no.h5'}",
        "--arm",
        "x",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "weights file not found" in result.output and "Traceback" not in result.output
