"""ResNet-50 weights in every form users bring, loaded exactly or refused by name."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import torch

from ovfdlr.deep.backbones import (
    KerasResNet50,
    WeightsError,
    load_backbone,
    torchvision_resnet50,
)


def outputs(backbone, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return backbone.model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(3).normal(0, 1, (2, 3, 224, 224)).astype(np.float32)


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    """A Keras ResNet50 (no top, average pooling) with seeded weights and non-trivial BatchNorm
    statistics, saved as a legacy .h5 by Keras itself, and its outputs on fixed images."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    keras.utils.set_random_seed(7)
    model = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg")
    rng = np.random.default_rng(11)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.8, 1.2, gamma.shape).astype("float32"),
                    rng.normal(0, 0.1, beta.shape).astype("float32"),
                    rng.normal(0, 0.1, mean.shape).astype("float32"),
                    rng.uniform(0.5, 1.5, variance.shape).astype("float32"),
                ]
            )
    path = tmp_path_factory.mktemp("keras") / "RadImageNet-ResNet50_notop.h5"
    model.save(path)
    x = np.random.default_rng(5).normal(0, 1, (3, 224, 224, 3)).astype("float32")
    return path, x, np.asarray(model.predict(x, verbose=0))


def test_keras_file_matches_keras(keras_file):
    path, x, expected = keras_file
    backbone = load_backbone(f"radimagenet:{path}")
    assert backbone.architecture == "keras-resnet50"
    assert backbone.normalization == "radimagenet-keras"
    ours = outputs(backbone, np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    assert ours.shape == (3, 2048)
    assert np.abs(ours - expected).max() <= 1e-4


def _rewrite_as_keras2(source, target, *, root: bool):
    """The same weights in Keras 2's layout: names with ':0', at the root or in model_weights."""
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        base = dst if root else dst.create_group("model_weights")
        weights = src["model_weights"]
        for layer in weights:
            group = base.create_group(layer)
            names = []

            def copy(name, obj, group=group, names=names):
                if isinstance(obj, h5py.Dataset):
                    group.create_dataset(f"{name}:0", data=obj[()])
                    names.append(f"{name}:0")

            weights[layer].visititems(copy)
            group.attrs["weight_names"] = [n.encode() for n in names]


@pytest.mark.parametrize("root", [True, False])
def test_keras2_names_and_root_layout(keras_file, tmp_path, root, images):
    path, _, _ = keras_file
    keras2 = tmp_path / "keras2.h5"
    _rewrite_as_keras2(path, keras2, root=root)
    with h5py.File(keras2) as handle:
        base = handle if root else handle["model_weights"]
        assert "conv1_conv/conv1_conv/kernel:0" in base
    reference = outputs(load_backbone(f"radimagenet:{path}"), images)
    np.testing.assert_array_equal(
        outputs(load_backbone(f"radimagenet:{keras2}"), images), reference
    )


def test_pytorch_conversion_of_the_keras_weights(keras_file, tmp_path, images):
    path, _, _ = keras_file
    keras_backbone = load_backbone(f"radimagenet:{path}")
    state = {k: v for k, v in keras_backbone.model.state_dict().items() if "num_batches" not in k}
    assert "conv1.bias" in state and "layer1.0.downsample.0.bias" in state
    converted = tmp_path / "RadImageNet_ResNet50_converted.pth"
    torch.save(state, converted)
    backbone = load_backbone(f"radimagenet:{converted}")
    assert backbone.architecture == "keras-resnet50"
    np.testing.assert_array_equal(outputs(backbone, images), outputs(keras_backbone, images))


def test_official_pytorch_checkpoint(tmp_path, images):
    torch.manual_seed(3)
    reference = torchvision_resnet50().eval()

    class Official(torch.nn.Module):  # the RadImageNet authors' wrapper
        def __init__(self, base):
            super().__init__()
            self.backbone = torch.nn.Sequential(*list(base.children())[:9])

    path = tmp_path / "ResNet50.pt"
    torch.save(Official(reference).state_dict(), path)
    backbone = load_backbone(f"radimagenet:{path}")
    assert backbone.architecture == "torchvision-resnet50"
    assert backbone.normalization == "radimagenet-torch"
    with torch.inference_mode():
        expected = reference(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(outputs(backbone, images), expected, rtol=0, atol=1e-6)


def test_imagenet_file_and_cache(tmp_path, monkeypatch, images):
    torch.manual_seed(4)
    import torchvision

    full = torchvision.models.resnet50(weights=None).eval()  # with its fc head
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save(full.state_dict(), path)
    backbone = load_backbone(f"imagenet:{path}")
    full.fc = torch.nn.Identity()
    with torch.inference_mode():
        expected = full(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(outputs(backbone, images), expected, rtol=0, atol=1e-6)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(WeightsError, match="not found in torchvision's cache"):
        load_backbone("imagenet")
    checkpoints = tmp_path / "torch-home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / path.name).write_bytes(path.read_bytes())
    cached = load_backbone("imagenet")
    assert cached.pretrained and cached.normalization == "imagenet"
    np.testing.assert_array_equal(outputs(cached, images), outputs(backbone, images))


def test_random_weights_are_seeded_and_labelled(images):
    a, b, c = load_backbone("random:1"), load_backbone("random:1"), load_backbone("random:2")
    np.testing.assert_array_equal(outputs(a, images), outputs(b, images))
    assert not np.allclose(outputs(a, images), outputs(c, images))
    assert not a.pretrained and "untrained" in a.label


def test_features_are_deterministic(keras_file, images):
    """Two independent loads of the same file give bit-identical features."""
    path, _, _ = keras_file
    first = outputs(load_backbone(f"radimagenet:{path}"), images)
    second = outputs(load_backbone(f"radimagenet:{path}"), images)
    np.testing.assert_array_equal(first, second)


# ---------------------------------------------------------------------------------------------
# broken files of every form: the message names the tensor


def test_keras_file_with_a_missing_tensor(keras_file, tmp_path):
    path, _, _ = keras_file
    broken = tmp_path / "missing.h5"
    broken.write_bytes(path.read_bytes())
    with h5py.File(broken, "a") as handle:
        del handle["model_weights/conv3_block2_2_bn/conv3_block2_2_bn/moving_variance"]
    with pytest.raises(WeightsError, match=r"missing tensors: layer2\.1\.bn2\.running_var"):
        load_backbone(f"radimagenet:{broken}")


def test_keras_file_with_a_wrong_shape(keras_file, tmp_path):
    path, _, _ = keras_file
    broken = tmp_path / "shape.h5"
    broken.write_bytes(path.read_bytes())
    with h5py.File(broken, "a") as handle:
        name = "model_weights/conv1_conv/conv1_conv/kernel"
        del handle[name]
        handle.create_dataset(name, data=np.zeros((5, 5, 3, 64), np.float32))
    with pytest.raises(WeightsError, match=r"wrong shapes: conv1\.weight \(file \(64, 3, 5, 5\)"):
        load_backbone(f"radimagenet:{broken}")


def test_keras_file_of_another_network(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("dense_1/dense_1/kernel:0", data=np.zeros((4, 4), np.float32))
    with pytest.raises(WeightsError, match="unexpected weights dense_1/dense_1/kernel:0"):
        load_backbone(f"radimagenet:{path}")


def test_pytorch_files_with_missing_shape_and_layout_errors(tmp_path):
    state = {k: v for k, v in KerasResNet50().state_dict().items() if "num_batches" not in k}
    missing = dict(state)
    del missing["layer4.2.conv3.bias"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match=r"missing tensors: layer4\.2\.conv3\.bias"):
        load_backbone(f"radimagenet:{tmp_path / 'missing.pth'}")

    shaped = dict(state)
    shaped["layer1.0.conv2.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(shaped, tmp_path / "shape.pth")
    with pytest.raises(WeightsError, match=r"wrong shapes: layer1\.0\.conv2\.weight"):
        load_backbone(f"radimagenet:{tmp_path / 'shape.pth'}")

    # torchvision's layout is not the Keras network: no conv biases
    torchvision_state = torchvision_resnet50().state_dict()
    torch.save(torchvision_state, tmp_path / "layout.pth")
    with pytest.raises(WeightsError, match=r"missing tensors: conv1\.bias"):
        load_backbone(f"radimagenet:{tmp_path / 'layout.pth'}")


def test_official_checkpoint_with_a_foreign_key(tmp_path):
    state = {
        f"backbone.0.{k.removeprefix('conv1.')}": v
        for k, v in torchvision_resnet50().state_dict().items()
        if k.startswith("conv1.")
    }
    state["backbone.9.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "ResNet50.pt")
    with pytest.raises(WeightsError, match=r"unexpected tensors: backbone\.9\.weight"):
        load_backbone(f"radimagenet:{tmp_path / 'ResNet50.pt'}")


def test_file_spec_strict_and_unknown_specs(tmp_path):
    state = torchvision_resnet50().state_dict()
    state["layer3.0.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(WeightsError, match=r"unexpected tensors: layer3\.0\.extra"):
        load_backbone(f"file:{tmp_path / 'extra.pth'}")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a PyTorch weights file"):
        load_backbone(f"file:{tmp_path / 'junk.pth'}")
    with pytest.raises(WeightsError, match="weights file not found"):
        load_backbone(f"radimagenet:{tmp_path / 'absent.h5'}")
    with pytest.raises(WeightsError, match="unknown weights 'resnet'"):
        load_backbone("resnet")
    with pytest.raises(WeightsError, match="need a file"):
        load_backbone("file")
