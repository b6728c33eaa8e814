"""ResNet-50 backbones and their weights, loaded strictly.

A weights *spec* names what to load:

``imagenet`` / ``imagenet:PATH``
    torchvision's ResNet-50 with torchvision's ImageNet weights, from torchvision's cache
    (``IMAGENET1K_V1``, ``resnet50-0676ba61.pth``, preferred; else ``IMAGENET1K_V2``) or an
    explicit file.
``radimagenet`` / ``radimagenet:PATH``
    the RadImageNet ResNet-50 imported with ``ovfdlr weights import radimagenet FILE``
    (:mod:`ovfdlr.deep.store`), or from an explicit file, in any of the forms users download,
    recognised from the file:

    (a) the official Keras file ``RadImageNet-ResNet50_notop.h5`` (Keras 2 legacy HDF5; weights
        at the file root or under ``model_weights``; dataset names with or without the Keras 2
        suffix ``:0``);
    (b) its published PyTorch conversion (keys ``conv1.weight``, ``conv1.bias``, ``bn1.*``,
        ``layerN.M.conv{1,2,3}.{weight,bias}``, ``...downsample.{0,1}.*``, no ``fc``);
    (c) the official RadImageNet PyTorch checkpoint (a torchvision ResNet-50 inside
        ``nn.Sequential``: ``backbone.0`` = conv1, ``backbone.1`` = bn1, ``backbone.4-7`` =
        layer1-4).

    The Keras ResNet-50 is not torchvision's: every convolution has a bias, BatchNorm's epsilon
    is 1.001e-5 and a downsampling block strides on its first 1x1 convolution rather than on the
    3x3 one. Forms (a) and (b) are loaded into :class:`KerasResNet50`, which is that network;
    form (c) into torchvision's.
``file:PATH``
    any torchvision-layout ResNet-50 state dict (``.pth``/``.pt`` or ``.safetensors``; a
    classification head ``fc.*`` is ignored), including ovfdlr's own fine-tuned weights.
``random:SEED``
    a seeded, untrained torchvision ResNet-50 for offline demos and tests; outputs say so.

Loading is strict: a missing, unexpected or mis-shaped tensor raises :class:`WeightsError`
naming the tensors; nothing is ever loaded with ``strict=False``. The one tolerance is
BatchNorm's ``num_batches_tracked`` counter, which does not affect inference and which many
converted files omit.

Preprocessing (``normalization``) follows each family's own convention, see
:mod:`ovfdlr.deep.inputs`: torchvision's ImageNet mean and standard deviation for ``imagenet``
and ``file``/``random``; for RadImageNet the authors' conventions: their Keras fine-tuning code
(``ImageDataGenerator(rescale=1/255, preprocessing_function=preprocess_input)``) gives
``(BGR_0..255 - [103.939, 116.779, 123.68]) / 255`` for the Keras forms (a, b), and their PyTorch
example ``(BGR_0..255 - 127.5) / 127.5`` for the PyTorch checkpoint (c).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ovfdlr.cache import file_digest
from ovfdlr.deep.errors import WeightsError
from ovfdlr.deep.finetuned import is_finetuned_file, read_finetuned
from ovfdlr.deep.specs import IMAGENET_FILES, imagenet_cache_file, parse_spec

KERAS_BN_EPS = 1.001e-5


# ---------------------------------------------------------------------------------------------
# the Keras ResNet-50, in PyTorch, with torchvision-like parameter names


class KerasBottleneck(nn.Module):
    """Keras' ResNet ``block1``: biased convolutions, stride on the first 1x1 convolution."""

    def __init__(self, in_channels: int, filters: int, stride: int, shortcut: bool):
        super().__init__()
        out = 4 * filters
        self.conv1 = nn.Conv2d(in_channels, filters, 1, stride=stride, bias=True)
        self.bn1 = nn.BatchNorm2d(filters, eps=KERAS_BN_EPS)
        self.conv2 = nn.Conv2d(filters, filters, 3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(filters, eps=KERAS_BN_EPS)
        self.conv3 = nn.Conv2d(filters, out, 1, bias=True)
        self.bn3 = nn.BatchNorm2d(out, eps=KERAS_BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(in_channels, out, 1, stride=stride, bias=True),
                nn.BatchNorm2d(out, eps=KERAS_BN_EPS),
            )
            if shortcut
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class KerasResNet50(nn.Module):
    """``keras.applications.ResNet50(include_top=False, pooling="avg")`` in PyTorch.

    Input (N, 3, H, W), output the 2048-D global average of the last stage. Parameter names
    follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv1`` ...), which is also the key layout
    of the published PyTorch conversion of the RadImageNet Keras weights.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=True)
        self.bn1 = nn.BatchNorm2d(64, eps=KERAS_BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        # Keras pads with zeros before max pooling; after the ReLU every value is >= 0, so this
        # equals PyTorch's -inf padding.
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for index, (filters, blocks, stride) in enumerate(
            ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), start=1
        ):
            layers = []
            for b in range(blocks):
                layers.append(
                    KerasBottleneck(channels, filters, stride if b == 0 else 1, shortcut=b == 0)
                )
                channels = 4 * filters
            setattr(self, f"layer{index}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def torchvision_resnet50() -> nn.Module:
    """torchvision's ResNet-50 with the classification head replaced by the identity."""
    import torchvision

    model = torchvision.models.resnet50(weights=None)
    model.fc = nn.Identity()
    return model


# ---------------------------------------------------------------------------------------------
# reading weight files


def _keras_layer_name(block: str) -> str | None:
    """Keras layer name of a torchvision-style module path.

    ``conv1`` -> ``conv1_conv``; ``layer1.0.conv1`` -> ``conv2_block1_1_conv``;
    ``layer2.0.downsample.1`` -> ``conv3_block1_0_bn``.
    """
    if block == "conv1":
        return "conv1_conv"
    if block == "bn1":
        return "conv1_bn"
    match = re.fullmatch(r"layer(\d)\.(\d+)\.(conv|bn)([123])", block)
    if match:
        stage, index, kind, position = match.groups()
        return f"conv{int(stage) + 1}_block{int(index) + 1}_{position}_{kind}"
    match = re.fullmatch(r"layer(\d)\.(\d+)\.downsample\.([01])", block)
    if match:
        stage, index, position = match.groups()
        kind = "conv" if position == "0" else "bn"
        return f"conv{int(stage) + 1}_block{int(index) + 1}_0_{kind}"
    return None


KERAS_TO_TORCH = {
    "kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def read_keras_h5(path: Path) -> dict[str, torch.Tensor]:
    """A Keras ResNet-50 HDF5 file as a state dict in :class:`KerasResNet50`'s key layout.

    Accepts weights at the file root (``save_weights``) or under ``model_weights`` (``save``),
    with Keras 2 names (``conv1_conv/conv1_conv/kernel:0``) or Keras 3 names (``.../kernel``).
    Convolution kernels go from Keras' (kh, kw, in, out) to PyTorch's (out, in, kh, kw).
    """
    import h5py

    torch_of_keras = {}
    for module_path in _module_paths(KerasResNet50()):
        keras_name = _keras_layer_name(module_path)
        if keras_name is not None:
            torch_of_keras[keras_name] = module_path
    state: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with handle:
        root = handle.get("model_weights", handle)
        for layer in root:
            group = root[layer]
            if not isinstance(group, h5py.Group):
                continue
            datasets: list[tuple[str, np.ndarray]] = []
            group.visititems(
                lambda name, obj, acc=datasets: (
                    acc.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None
                )
            )
            if not datasets:
                continue  # layers without weights (padding, activation, pooling)
            module_path = torch_of_keras.get(layer)
            for name, value in datasets:
                leaf = name.split("/")[-1].removesuffix(":0")
                if module_path is None or leaf not in KERAS_TO_TORCH:
                    unexpected.append(f"{layer}/{name}")
                    continue
                array = np.asarray(value)
                if leaf == "kernel" and array.ndim == 4:
                    array = array.transpose(3, 2, 0, 1)
                state[f"{module_path}.{KERAS_TO_TORCH[leaf]}"] = torch.from_numpy(
                    np.ascontiguousarray(array, dtype=np.float32)
                )
    if unexpected:
        raise WeightsError(
            f"{path}: not a Keras ResNet-50 (no top): unexpected weights {_names(unexpected)}"
        )
    return state


def _module_paths(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if list(module.parameters(False))]


def read_torch_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth``/``.pt`` (loaded with ``weights_only``) or safetensors file.

    Unwraps the usual containers (``state_dict``, ``model``) and a ``module.`` prefix left by
    DataParallel.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad or foreign file
        raise WeightsError(f"{path}: not a PyTorch weights file ({type(exc).__name__})") from exc
    for container in ("state_dict", "model", "model_state_dict"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(container), Mapping):
            loaded = loaded[container]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise WeightsError(f"{path}: holds no state dict of tensors")
    state = dict(loaded)
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


# torchvision resnet50 children in order: conv1 bn1 relu maxpool layer1 layer2 layer3 layer4
SEQUENTIAL_TO_TORCHVISION = {
    "0": "conv1",
    "1": "bn1",
    "4": "layer1",
    "5": "layer2",
    "6": "layer3",
    "7": "layer4",
}


def from_sequential_backbone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys of the official RadImageNet PyTorch checkpoint (``backbone.N.*``) -> torchvision."""
    renamed = {}
    for key, value in state.items():
        match = re.fullmatch(r"backbone\.(\d+)\.(.+)", key)
        if match and match.group(1) in SEQUENTIAL_TO_TORCHVISION:
            renamed[f"{SEQUENTIAL_TO_TORCHVISION[match.group(1)]}.{match.group(2)}"] = value
        else:
            renamed[key] = value  # left as is: strict loading will name it
    return renamed


def _names(names: Iterable[str], limit: int = 12) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` or raise :class:`WeightsError` naming every mismatch."""
    expected = model.state_dict()
    state = dict(state)
    for key, value in expected.items():  # the one tolerated omission, see the module docstring
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {_names(unexpected)}")
    if shapes:
        problems.append(f"wrong shapes: {_names(shapes)}")
    if problems:
        raise WeightsError(f"{source}: weights do not fit the network; " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------------------
# the public entry point


@dataclass
class Backbone:
    """A loaded feature extractor (N, 3, 224, 224) -> (N, 2048) and what it is."""

    model: nn.Module
    spec: str
    family: str  # imagenet | radimagenet | file | random
    architecture: str  # torchvision-resnet50 | keras-resnet50
    normalization: str  # imagenet | radimagenet-keras | radimagenet-torch
    weights_sha256: str | None
    pretrained: bool

    @property
    def label(self) -> str:
        """How reports name it; untrained networks always say so."""
        if not self.pretrained:
            return f"ResNet-50, untrained ({self.spec})"
        return f"ResNet-50, {self.family} weights ({self.architecture})"


def spec_digest(spec: str) -> str:
    """What identifies the weights for caching: the file's SHA-256, or the seed."""
    family, argument = parse_spec(spec)
    if family == "random":
        return f"random:{int(argument or 0)}"
    if family == "radimagenet" and argument is None:
        from ovfdlr.deep.store import imported

        record = imported("radimagenet")
        return record.sha256 if record is not None else f"missing:{spec}"
    path = Path(argument) if argument else imagenet_cache_file()
    if path is None or not path.is_file():
        return f"missing:{spec}"
    return file_digest(path)


def load_backbone(spec: str) -> Backbone:
    """Build the network named by ``spec`` and load its weights strictly (eval mode)."""
    family, argument = parse_spec(spec)
    if family == "random":
        try:
            seed = int(argument or 0)
        except ValueError as exc:
            raise WeightsError(f"weights '{spec}': the seed must be an integer") from exc
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        model = torchvision_resnet50()
        torch.random.set_rng_state(generator_state)
        return Backbone(
            model.eval(), spec, "random", "torchvision-resnet50", "imagenet", None, False
        )

    if family == "imagenet" and argument is None:
        path = imagenet_cache_file()
        if path is None:
            folder = Path(torch.hub.get_dir()) / "checkpoints"
            raise WeightsError(
                f"ImageNet ResNet-50 weights not found in torchvision's cache ({folder}): run "
                f"ovfdlr weights fetch imagenet, put {IMAGENET_FILES[0]} there, or pass "
                "imagenet:PATH"
            )
    elif family == "radimagenet" and argument is None:
        from ovfdlr.deep.store import named_file

        path = named_file("radimagenet")  # the imported file, its SHA-256 checked
    else:
        path = Path(argument)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    digest = file_digest(path)

    if family == "radimagenet":
        with path.open("rb") as handle:
            is_hdf5 = handle.read(8) == b"\x89HDF\r\n\x1a\n"
        if is_hdf5:
            model, state = KerasResNet50(), read_keras_h5(path)
            architecture, normalization = "keras-resnet50", "radimagenet-keras"
        else:
            state = read_torch_file(path)
            if any(k.startswith("backbone.") for k in state):
                model, state = torchvision_resnet50(), from_sequential_backbone(state)
                architecture, normalization = "torchvision-resnet50", "radimagenet-torch"
            else:
                model = KerasResNet50()
                architecture, normalization = "keras-resnet50", "radimagenet-keras"
        load_strict(model, state, str(path))
        return Backbone(model.eval(), spec, family, architecture, normalization, digest, True)

    if is_finetuned_file(path):  # ovfdlr's own fine-tuned weights carry their architecture
        return load_finetuned(path, spec)[0]
    state = read_torch_file(path)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # classification head
    model = torchvision_resnet50()
    load_strict(model, state, str(path))
    return Backbone(model.eval(), spec, family, "torchvision-resnet50", "imagenet", digest, True)


def load_finetuned(path: str | Path, spec: str | None = None) -> tuple[Backbone, nn.Linear]:
    """The backbone and head of a fine-tuned weights file (:mod:`ovfdlr.deep.finetuned`),
    loaded strictly; the head has as many outputs as the file's head (its class values are
    :attr:`ovfdlr.deep.finetuned.FinetunedFile.classes`)."""
    path = Path(path)
    saved = read_finetuned(path)
    architecture = saved.architecture
    trunk = KerasResNet50() if architecture == "keras-resnet50" else torchvision_resnet50()
    head = nn.Linear(2048, saved.n_classes)
    load_strict(trunk, saved.backbone_state, str(path))
    load_strict(head, saved.head_state, str(path))
    backbone = Backbone(
        trunk.eval(),
        spec or f"file:{path}",
        saved.metadata.get("family", "file"),
        architecture,
        saved.metadata["normalization"],
        state_digest(trunk),  # as when the weights were made: features cache across the two
        True,
    )
    return backbone, head.eval()


def state_digest(model: nn.Module) -> str:
    """SHA-256 over a model's tensors (names, shapes and values), for in-memory weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
