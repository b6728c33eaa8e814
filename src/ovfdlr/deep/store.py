"""The weights people use, by name: torchvision's ImageNet file and an imported RadImageNet file.

``ovfdlr weights fetch imagenet`` downloads torchvision's ImageNet ResNet-50 (``IMAGENET1K_V1``)
into torchvision's own cache with ``torch.hub.download_url_to_file``, the function torchvision
uses itself: a progress bar, a temporary file renamed into place only when complete, and the
SHA-256 prefix in the file's name checked. ``ovfdlr weights import radimagenet FILE`` loads a
RadImageNet file strictly (any form :func:`ovfdlr.deep.backbones.load_backbone` reads), copies
it into the weights folder (:func:`weights_folder`) and records its SHA-256 there, so that the
spec ``radimagenet`` (no path) names it; a file changed after its import is refused.
``imagenet FILE`` imports a copy of torchvision's file made elsewhere (for machines without
network), which must be one of torchvision's two files by its SHA-256 prefix.

Nothing here imports torch until a file is loaded or downloaded, so checking a spec stays cheap.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ovfdlr.atomic import atomic_write, atomic_write_text
from ovfdlr.cache import file_digest
from ovfdlr.deep.errors import WeightsError
from ovfdlr.deep.specs import IMAGENET_FILES, imagenet_cache_file, imagenet_cache_folder

#: Where torchvision publishes the files of :data:`IMAGENET_FILES` (``ResNet50_Weights.*.url``).
IMAGENET_BASE_URL = "https://download.pytorch.org/models/"
#: The names ``weights import`` and ``weights fetch`` accept.
NAMED = ("imagenet", "radimagenet")
REGISTRY = "weights.json"
HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")


def weights_folder() -> Path:
    """``$OVFDLR_WEIGHTS``, else ``$XDG_DATA_HOME/ovfdlr/weights``, else
    ``~/.local/share/ovfdlr/weights``: where imported weights and their record live."""
    if os.environ.get("OVFDLR_WEIGHTS"):
        return Path(os.environ["OVFDLR_WEIGHTS"])
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "ovfdlr" / "weights"


def _registry() -> dict:
    path = weights_folder() / REGISTRY
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a weights record ({exc})") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: not a weights record (expected an object)")
    return data


@dataclass(frozen=True)
class Imported:
    """A weights file imported by name: where it is, its SHA-256, what it was and is."""

    name: str
    path: Path
    sha256: str
    source: str
    architecture: str
    normalization: str
    imported: str


def imported(name: str) -> Imported | None:
    """The record of the weights imported as ``name`` (None when none were)."""
    entry = _registry().get(name)
    if entry is None:
        return None
    try:
        return Imported(
            name,
            weights_folder() / entry["file"],
            entry["sha256"],
            entry["source"],
            entry["architecture"],
            entry["normalization"],
            entry["imported"],
        )
    except (KeyError, TypeError):
        raise WeightsError(
            f"{weights_folder() / REGISTRY}: the entry '{name}' is incomplete; import the "
            f"file again (ovfdlr weights import {name} FILE)"
        ) from None


def named_file(name: str) -> Path:
    """The checked file of the weights imported as ``name`` (``radimagenet``).

    Raises :class:`WeightsError` when none were imported, the file is gone, or its SHA-256 is
    not the one recorded at import (a changed file would silently change every feature)."""
    record = imported(name)
    if record is None:
        raise WeightsError(
            f"no {name} weights imported: run ovfdlr weights import {name} FILE (or give "
            f"{name}:PATH)"
        )
    if not record.path.is_file():
        raise WeightsError(
            f"{record.path}: the imported {name} weights are missing; import them again "
            f"(ovfdlr weights import {name} FILE)"
        )
    digest = file_digest(record.path)
    if digest != record.sha256:
        raise WeightsError(
            f"{record.path}: SHA-256 {digest[:16]}... is not the {record.sha256[:16]}... "
            f"recorded when the {name} weights were imported; import them again"
        )
    return record.path


def import_weights(name: str, source: str | Path) -> Imported | Path:
    """Check ``source`` loads strictly as ``name``'s weights and make it available by name.

    ``radimagenet``: copied into :func:`weights_folder`, recorded with its SHA-256 and form;
    returns the record. ``imagenet``: must be one of torchvision's files (its SHA-256 starts
    with the prefix in the file name torchvision gives it); copied into torchvision's cache
    under that name; returns the path.
    """
    from ovfdlr.deep.backbones import load_backbone

    source = Path(source).expanduser()
    if name not in NAMED:
        raise WeightsError(f"unknown weights name '{name}': use {' or '.join(NAMED)}")
    if not source.is_file():
        raise WeightsError(f"{source}: weights file not found")
    digest = file_digest(source)
    if name == "imagenet":
        target = next((f for f in IMAGENET_FILES if digest.startswith(_name_hash(f))), None)
        if target is None:
            raise WeightsError(
                f"{source}: SHA-256 {digest[:16]}... is not that of torchvision's ImageNet "
                f"ResNet-50 ({' or '.join(IMAGENET_FILES)}); for other weights use file:PATH"
            )
        load_backbone(f"imagenet:{source}")  # strict
        folder = imagenet_cache_folder()
        _copy(source, folder / target)
        return folder / target
    backbone = load_backbone(f"radimagenet:{source}")  # strict; names what does not fit
    folder = weights_folder()
    stored = folder / f"radimagenet-{digest[:12]}{''.join(source.suffixes[-1:])}"
    _copy(source, stored)
    record = Imported(
        name,
        stored,
        digest,
        str(source.resolve()),
        backbone.architecture,
        backbone.normalization,
        time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    registry = _registry()
    registry[name] = {
        "file": stored.name,
        "sha256": digest,
        "source": record.source,
        "architecture": record.architecture,
        "normalization": record.normalization,
        "imported": record.imported,
    }
    atomic_write_text(folder / REGISTRY, json.dumps(registry, indent=2))
    return record


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.resolve() != target.resolve():
        atomic_write(target, lambda temporary: shutil.copyfile(source, temporary))


def _name_hash(name: str) -> str:
    found = HASH_IN_NAME.search(name)
    return found.group(1) if found else ""


def fetch_imagenet(url: str | None = None, *, progress: bool = True) -> Path:
    """Download torchvision's ImageNet ResNet-50 into torchvision's cache; its path.

    ``url`` defaults to torchvision's ``IMAGENET1K_V1`` file. The file keeps the URL's name, and
    the SHA-256 prefix in that name is checked (``torch.hub``'s convention); a download that
    fails leaves nothing behind. A file already in the cache is not downloaded again.
    """
    import urllib.error

    from torch.hub import download_url_to_file

    url = url or IMAGENET_BASE_URL + IMAGENET_FILES[0]
    name = url.rstrip("/").rsplit("/", 1)[-1]
    target = imagenet_cache_folder() / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = _name_hash(name) or None
    try:
        download_url_to_file(url, str(target), hash_prefix=prefix, progress=progress)
    except urllib.error.HTTPError as exc:
        raise WeightsError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WeightsError(
            f"cannot download {url}: {reason}. Where this machine has no network, download "
            f"{name} elsewhere and run: ovfdlr weights import imagenet FILE"
        ) from None
    except RuntimeError as exc:  # torch.hub: the SHA-256 does not start with the prefix
        raise WeightsError(f"downloaded {url}, but {exc}; nothing was kept") from None
    return target


def available() -> list[dict]:
    """One row per named weights: whether they are here, the file, its SHA-256 and how to get
    them (``ovfdlr weights list``)."""
    rows = []
    cached = imagenet_cache_file()
    rows.append(
        {
            "name": "imagenet",
            "available": cached is not None,
            "file": str(cached) if cached else "",
            "sha256": file_digest(cached) if cached else "",
            "get": "ovfdlr weights fetch imagenet (or: ovfdlr weights import imagenet FILE)",
        }
    )
    record = imported("radimagenet")
    here = record is not None and record.path.is_file()
    rows.append(
        {
            "name": "radimagenet",
            "available": here,
            "file": str(record.path) if record else "",
            "sha256": record.sha256 if record else "",
            "get": "ovfdlr weights import radimagenet FILE",
        }
    )
    rows.append(
        {
            "name": "random:SEED",
            "available": True,
            "file": "",
            "sha256": "",
            "get": "always (seeded, untrained)",
        }
    )
    return rows


def resolve(spec: str) -> dict:
    """What a weights spec would load here: the file, its SHA-256, or why it cannot."""
    from ovfdlr.deep.specs import parse_spec

    try:
        family, argument = parse_spec(spec)
        if family == "random":
            return {"file": "", "sha256": "", "status": "untrained (seeded)"}
        if family == "imagenet" and argument is None:
            path = imagenet_cache_file()
            if path is None:
                raise WeightsError("not in torchvision's cache: ovfdlr weights fetch imagenet")
        elif family == "radimagenet" and argument is None:
            path = named_file("radimagenet")
        else:
            path = Path(argument)
            if not path.is_file():
                raise WeightsError(f"{path}: weights file not found")
        return {"file": str(path), "sha256": file_digest(path), "status": "available"}
    except WeightsError as exc:
        return {"file": "", "sha256": "", "status": f"missing: {exc}"}
