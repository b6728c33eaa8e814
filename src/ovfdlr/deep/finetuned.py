"""The fine-tuned weights file: one safetensors file with the backbone, the head and metadata.

Layout:

- tensors ``backbone.<name>`` (the trunk's state dict) and ``head.<name>`` (the linear head,
  ``weight`` of shape (n_classes, 2048) and ``bias``);
- metadata (strings): ``ovfdlr_finetuned`` = ``"1"`` (what marks the file as ovfdlr's),
  ``architecture``, ``normalization``, ``family``, ``base_weights``, ``best_epoch``,
  ``classes`` (JSON list of the class values, in head order), ``settings`` (JSON of the
  fine-tuning settings) and ``extra`` (JSON; the deep stage keeps its cache key there).

The training curve is written beside it as ``<stem>.curve.csv``. Both are written to temporary
names and renamed, curve first and weights last, so a weights file that exists is complete.

This module knows only the file; building networks from it is :mod:`ovfdlr.deep.backbones`'
(:func:`~ovfdlr.deep.backbones.load_finetuned`) and producing it :mod:`ovfdlr.deep.finetune`'
(:func:`~ovfdlr.deep.finetune.save_finetuned`), so that neither of those imports the other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ovfdlr.atomic import atomic_path, atomic_write_bytes
from ovfdlr.deep.errors import WeightsError

if TYPE_CHECKING:
    import pandas as pd

METADATA_KEY = "ovfdlr_finetuned"
BACKBONE_PREFIX = "backbone."
HEAD_PREFIX = "head."


@dataclass
class FinetunedFile:
    """The content of a fine-tuned weights file."""

    backbone_state: dict[str, torch.Tensor]
    head_state: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return self.metadata["architecture"]

    @property
    def n_classes(self) -> int:
        """The head's size, from its weight tensor (files written before the class values
        were recorded have no ``classes`` entry)."""
        return int(self.head_state["weight"].shape[0])

    @property
    def classes(self) -> tuple[int, ...]:
        """The class values in head order (``0 .. n_classes - 1`` when not recorded)."""
        recorded = self.metadata.get("classes")
        if recorded is None:
            return tuple(range(self.n_classes))
        return tuple(int(v) for v in json.loads(recorded))

    @property
    def extra(self) -> dict:
        return json.loads(self.metadata.get("extra") or "{}")


def curve_path(path: str | Path) -> Path:
    """Where the training curve of the weights file ``path`` lives."""
    return Path(path).with_suffix(".curve.csv")


def write_finetuned(
    path: str | Path,
    backbone_state: Mapping[str, torch.Tensor],
    head_state: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str],
    curve: pd.DataFrame,
) -> Path:
    """Write the weights file (``metadata`` plus the marker) and its curve, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"{BACKBONE_PREFIX}{k}": v.contiguous() for k, v in backbone_state.items()}
    tensors |= {f"{HEAD_PREFIX}{k}": v.contiguous() for k, v in head_state.items()}
    # curve first, weights last, each renamed into place: a file that exists is complete
    atomic_write_bytes(curve_path(path), curve.to_csv(index=False).encode())
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata={METADATA_KEY: "1", **metadata})
    return path


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def is_finetuned_file(path: str | Path) -> bool:
    """True for a safetensors file written by :func:`write_finetuned`."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    return _metadata(path).get(METADATA_KEY) == "1"


def recorded_extra(path: str | Path) -> dict | None:
    """The ``extra`` record of a fine-tuned weights file; None when absent or unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(_metadata(path).get("extra", "{}"))
    except Exception:  # a damaged file (a crash while writing it) is simply made again
        return None


def read_finetuned(path: str | Path) -> FinetunedFile:
    """The tensors and metadata of a fine-tuned weights file; :class:`WeightsError` for any
    other file."""
    from safetensors import safe_open

    path = Path(path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    if metadata.get(METADATA_KEY) != "1":
        raise WeightsError(f"{path}: not a fine-tuned ovfdlr weights file")

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}

    head = part(HEAD_PREFIX)
    if "weight" not in head:
        raise WeightsError(f"{path}: fine-tuned weights file without a head (head.weight)")
    return FinetunedFile(part(BACKBONE_PREFIX), head, metadata)
