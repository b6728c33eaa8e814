"""``deep.device`` / ``--device``: the CPU path unchanged, CUDA refused where there is none,
``auto`` falling back with a note, mixed precision kept apart in the cache."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from ovfdlr.cli import app
from ovfdlr.deep import device as device_module
from ovfdlr.deep.backbones import load_backbone
from ovfdlr.deep.device import identity, resolve_device
from ovfdlr.deep.errors import DeviceError
from ovfdlr.deep.features import backbone_identity, embed

runner = CliRunner()


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(device_module, "cuda_available", lambda: False)


def test_cuda_without_a_device_is_one_line(no_cuda):
    with pytest.raises(DeviceError, match=r"^--device cuda: no CUDA device here \(torch "):
        resolve_device("cuda", "--device")
    assert resolve_device("cpu") == ("cpu", None)
    used, note = resolve_device("auto", "arms.0.deep.device (deep)")
    assert used == "cpu"
    assert note == (
        "arms.0.deep.device (deep) auto: no CUDA device here, the deep features ran on the CPU"
    )
    with pytest.raises(DeviceError, match="'gpu' is not one of auto, cpu, cuda"):
        resolve_device("gpu")


def test_auto_takes_cuda_when_torch_sees_it(monkeypatch):
    monkeypatch.setattr(device_module, "cuda_available", lambda: True)
    assert resolve_device("auto") == ("cuda", None)
    assert resolve_device("cuda") == ("cuda", None)


def test_cli_and_config_refuse_cuda_before_any_work(no_cuda, tmp_path, synthetic_cohort):
    manifest = synthetic_cohort / "manifest.csv"
    out = tmp_path / "deep.parquet"
    command = ["extract", "deep", str(manifest), "--out", str(out), "--weights", "random:0"]
    result = runner.invoke(app, [*command, "--arm", "x", "--device", "cuda"])
    assert result.exit_code == 1
    assert "--device cuda: no CUDA device here" in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert not out.exists()

    config = tmp_path / "experiment.yaml"
    config.write_text(
        f"manifest: {manifest}\narms:\n  - {{name: deep, deep: {{weights: 'random:0', "
        "device: cuda}}\n"
    )
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "arms.0.deep.device (deep) cuda: no CUDA device here" in result.output
    assert not (tmp_path / "run" / "features").exists()


def test_cpu_keys_are_unchanged_and_other_placements_are_not():
    assert identity("cpu", False) == {}
    backbone = load_backbone("random:0")
    plain = backbone_identity(backbone)
    assert backbone_identity(backbone, "cpu", False) == plain
    assert backbone_identity(backbone, "cuda", False) == {**plain, "device": "cuda"}
    assert backbone_identity(backbone, "cpu", True) == {**plain, "mixed_precision": True}


def test_mixed_precision_on_the_cpu_is_close_not_equal():
    """bfloat16 autocast keeps about 2-3 significant digits of each feature."""
    backbone = load_backbone("random:0")
    images = np.random.default_rng(0).random((4, 3, 224, 224), dtype=np.float32)
    full = embed(backbone.model, images, "imagenet", 4)
    np.testing.assert_array_equal(full, embed(backbone.model, images, "imagenet", 4))
    mixed = embed(backbone.model, images, "imagenet", 4, mixed_precision=True)
    assert mixed.dtype == np.float32 and mixed.shape == full.shape
    assert not np.array_equal(mixed, full)
    scale = np.abs(full).max()
    assert np.abs(mixed - full).max() / scale < 0.05
    correlation = np.corrcoef(mixed.ravel(), full.ravel())[0, 1]
    assert correlation > 0.999
