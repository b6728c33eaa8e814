"""Weight specs (``family[:argument]``) and where torchvision keeps ImageNet weights.

Kept apart from :mod:`ovfdlr.deep.backbones` so that checking a spec before any work
(:mod:`ovfdlr.preflight`, ``ovfdlr predict``) imports no torch; only finding torchvision's cache
for plain ``imagenet`` does.
"""

from __future__ import annotations

from pathlib import Path

from ovfdlr.deep.errors import WeightsError

FAMILIES = ("imagenet", "radimagenet", "file", "random")
IMAGENET_FILES = ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth")  # V1, V2


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``family[:argument]``; raises :class:`WeightsError` for an unknown family.

    ``imagenet`` alone is torchvision's cached file, ``radimagenet`` alone the file imported
    with ``ovfdlr weights import radimagenet`` (:mod:`ovfdlr.deep.store`)."""
    family, _, argument = spec.partition(":")
    if family not in FAMILIES:
        raise WeightsError(
            f"unknown weights '{spec}': use imagenet, imagenet:PATH, radimagenet, "
            "radimagenet:PATH, file:PATH or random:SEED"
        )
    if family == "file" and not argument:
        raise WeightsError(f"weights '{spec}' need a file: {family}:PATH")
    return family, argument or None


def imagenet_cache_folder() -> Path:
    """torchvision's checkpoint folder (``torch.hub.get_dir()/checkpoints``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_cache_file() -> Path | None:
    """torchvision's cached ImageNet ResNet-50 weights (V1 preferred), if present."""
    folder = imagenet_cache_folder()
    for name in IMAGENET_FILES:
        if (folder / name).is_file():
            return folder / name
    return None
