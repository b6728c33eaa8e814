"""Content hashes and the on-disk per-case cache.

A case's result is stored under a key made of what determines it: the content hashes of its
image and mask (not their paths or dates), its mask label, and the fully resolved settings of
the stage. A rerun finds every finished case by its key and recomputes nothing; a run killed
half-way has lost at most the cases in flight, because each entry is written atomically (to a
temporary file, then renamed) as soon as its case finishes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CACHE_ENV = "OVFDLR_CACHE"


def default_cache_dir() -> Path:
    """``$OVFDLR_CACHE``, else ``$XDG_CACHE_HOME/ovfdlr``, else ``~/.cache/ovfdlr``."""
    if os.environ.get(DEFAULT_CACHE_ENV):
        return Path(os.environ[DEFAULT_CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ovfdlr"


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes; for a folder (a DICOM series), of every file name and content
    below it, in sorted order."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(child.relative_to(path).as_posix().encode())
            digest.update(bytes.fromhex(file_digest(child)))
        return digest.hexdigest()
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def stable_hash(*parts: Any) -> str:
    """SHA-256 of the canonical JSON of ``parts`` (dict keys sorted, tuples as lists)."""
    text = json.dumps(_jsonable(list(parts)), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CaseCache:
    """JSON entries under ``root/<namespace>/<key[:2]>/<key>.json``.

    Floats survive exactly: Python's JSON writes the shortest repr that reads back to the same
    double, and NaN / infinity are kept.
    """

    def __init__(self, root: str | Path, namespace: str):
        self.root = Path(root) / namespace

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self.path(key)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):  # a damaged entry is recomputed
            return None

    def put(self, key: str, value: dict) -> None:
        atomic_write_bytes(self.path(key), json.dumps(value, allow_nan=True).encode())

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()
