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


_MEMO: dict[tuple, str] = {}


def _stat_key(path: Path) -> tuple:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)


class DigestIndex:
    """File digests remembered on disk by (path, size, modification time, inode).

    A rerun over an unchanged cohort then reads no image bytes to find its cache entries (the
    same trust in file metadata that make and git place). Kept as SQLite beside the cache so
    parallel runs can share it.
    """

    def __init__(self, root: str | Path):
        self.path = Path(root) / "digests.sqlite"
        self._connection = None

    def _connect(self):
        if self._connection is None:
            import sqlite3

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(self.path, timeout=60)
            self._connection.execute(
                "CREATE TABLE IF NOT EXISTS digests (path TEXT, size INTEGER, mtime INTEGER, "
                "inode INTEGER, digest TEXT, PRIMARY KEY (path, size, mtime, inode))"
            )
        return self._connection

    def get(self, key: tuple) -> str | None:
        row = (
            self._connect()
            .execute(
                "SELECT digest FROM digests WHERE path=? AND size=? AND mtime=? AND inode=?", key
            )
            .fetchone()
        )
        return row[0] if row else None

    def put(self, key: tuple, digest: str) -> None:
        connection = self._connect()
        with connection:
            connection.execute(
                "INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?)", (*key, digest)
            )

    def __getstate__(self):  # the open connection stays in this process
        return {"path": self.path, "_connection": None}


def file_digest(path: str | Path, index: DigestIndex | None = None) -> str:
    """SHA-256 of a file's bytes; for a DICOM series folder, of the series' files (names and
    contents, in slice order) that the reader actually reads.

    Remembered in this process, and in ``index`` when given, by path, size, modification time
    and inode.
    """
    path = Path(path)
    if path.is_dir():
        from ovfdlr.imaging import dicom_series_files

        digest = hashlib.sha256()
        for name in dicom_series_files(path):
            child = Path(name)
            digest.update(os.fsencode(child.name))
            digest.update(bytes.fromhex(file_digest(child, index)))
        return digest.hexdigest()
    key = _stat_key(path)
    found = _MEMO.get(key)
    known = index.get(key) if index is not None else None
    found = found or known
    if found is None:
        with path.open("rb") as handle:
            found = hashlib.file_digest(handle, "sha256").hexdigest()
    if index is not None and known is None:
        index.put(key, found)
    _MEMO[key] = found
    return found


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
    """JSON entries under ``root/<namespace>/<key[:2]>/<key>.json`` (and the file digest index).

    Floats survive exactly: Python's JSON writes the shortest repr that reads back to the same
    double, and NaN / infinity are kept.
    """

    def __init__(self, root: str | Path, namespace: str):
        self.root = Path(root) / namespace
        self.digests = DigestIndex(root)

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
