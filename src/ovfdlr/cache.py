"""Content hashes and the on-disk per-case cache.

A case's result is stored under a key made of what determines it: the content hashes of its
image and mask (not their paths or dates), its mask label, and the fully resolved settings of
the stage. A rerun finds every finished case by its key and recomputes nothing; a run killed
half-way has lost at most the cases in flight, because each entry is written atomically (to a
temporary file, then renamed) as soon as its case finishes.

Each entry carries the SHA-256 and length of its content in a first line, so an entry that was
truncated or changed on disk is never taken for a result: it is reported (a warning naming the
file and what is wrong, counted in :attr:`CaseCache.damaged`), removed and recomputed. The same
holds for the digest index (an SQLite file that is not a database, or a damaged one, is
reported and made again; it only remembers digests).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from ovfdlr.atomic import WriteError, atomic_write_bytes

DEFAULT_CACHE_ENV = "OVFDLR_CACHE"

log = logging.getLogger("ovfdlr.cache")


def report_damaged(path: str | Path, reason: str) -> tuple[Path, str]:
    """Log a damaged cache file (a warning naming it and what is wrong); return both."""
    log.warning("damaged cache entry %s (%s): not used, recomputed", path, reason)
    return Path(path), reason


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


_DAMAGE = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
_DIGEST = re.compile(r"[0-9a-f]{64}")


def _is_damage(exc: sqlite3.Error) -> bool:
    """Whether an SQLite error means a damaged file (not a busy or locked one)."""
    name = getattr(exc, "sqlite_errorname", "")
    if name:
        return name in _DAMAGE
    return type(exc) is sqlite3.DatabaseError


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL" or "disk is full" in str(exc)


def _write_error(path: Path, exc: sqlite3.Error) -> WriteError | None:
    """The :class:`WriteError` of an SQLite error that is a failed write: a full disk
    (SQLITE_FULL) or an I/O error on writing (SQLITE_IOERR_*, which is what a file size limit,
    EFBIG, gives); ``None`` for any other error."""
    if _is_full(exc):
        return WriteError(path, "no space left on device", errno.ENOSPC)
    name = getattr(exc, "sqlite_errorname", "")
    if name.startswith("SQLITE_IOERR") or "disk I/O error" in str(exc):
        return WriteError(
            path, f"disk I/O error ({name or 'SQLite'}): no space left or file too large"
        )
    return None


class DigestIndex:
    """File digests remembered on disk by (path, size, modification time, inode).

    A rerun over an unchanged cohort then reads no image bytes to find its cache entries (the
    same trust in file metadata that make and git place). Kept as SQLite beside the cache so
    parallel runs can share it. A damaged index file (not a database, or failing SQLite's
    quick check) and a stored digest that is not one are reported (:attr:`damaged`) and
    dropped: the digests are computed again.
    """

    def __init__(self, root: str | Path):
        self.path = Path(root) / "digests.sqlite"
        self._connection = None
        self.damaged: list[tuple[Path, str]] = []

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=60)
        try:
            (verdict,) = connection.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"quick check: {verdict}")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS digests (path TEXT, size INTEGER, mtime INTEGER, "
                "inode INTEGER, digest TEXT, PRIMARY KEY (path, size, mtime, inode))"
            )
        except BaseException:
            connection.close()
            raise
        return connection

    def _rebuild(self, exc: sqlite3.Error) -> None:
        """Report the damaged file, remove it and start an empty one."""
        self.damaged.append(report_damaged(self.path, f"digest index: {exc}"))
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        for path in (self.path, self.path.with_name(self.path.name + "-journal")):
            path.unlink(missing_ok=True)

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            try:
                self._connection = self._open()
            except sqlite3.DatabaseError as exc:
                failed = _write_error(self.path, exc)
                if failed is not None:
                    raise failed from exc
                if not (_is_damage(exc) or str(exc).startswith("quick check")):
                    raise
                self._rebuild(exc)
                self._connection = self._open()
        return self._connection

    def get(self, key: tuple) -> str | None:
        query = "SELECT digest FROM digests WHERE path=? AND size=? AND mtime=? AND inode=?"
        try:
            row = self._connect().execute(query, key).fetchone()
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            self._rebuild(exc)
            return None
        if row is None:
            return None
        if not isinstance(row[0], str) or not _DIGEST.fullmatch(row[0]):
            self.damaged.append(
                report_damaged(self.path, f"digest index: {key[0]} has no valid digest")
            )
            return None
        return row[0]

    def put(self, key: tuple, digest: str) -> None:
        for attempt in range(2):
            try:
                connection = self._connect()
                with connection:
                    connection.execute(
                        "INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?)", (*key, digest)
                    )
                return
            except sqlite3.DatabaseError as exc:
                failed = _write_error(self.path, exc)
                if failed is not None:
                    raise failed from exc
                if attempt or not _is_damage(exc):
                    raise
                self._rebuild(exc)

    def __getstate__(self):  # the open connection stays in this process
        return {"path": self.path, "_connection": None, "damaged": []}


def file_digest(
    path: str | Path, index: DigestIndex | None = None, series_uid: str | None = None
) -> str:
    """SHA-256 of a file's bytes; for a DICOM series folder, of the series' files (names and
    contents, in slice order) that the reader actually reads: the series ``series_uid``
    chooses, else the folder's only one (a folder of several series and no choice, which the
    reader refuses, is hashed over every series' files).

    Remembered in this process, and in ``index`` when given, by path, size, modification time
    and inode.
    """
    path = Path(path)
    if path.is_dir():
        from ovfdlr.imaging import dicom_folder_files

        digest = hashlib.sha256()
        for name in dicom_folder_files(path, series_uid):
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


ENTRY_HEADER = b"ovfdlr-cache-entry"


def encode_entry(value: dict) -> bytes:
    """A cache entry's bytes: a first line with the SHA-256 and length of the JSON content,
    then the content."""
    content = json.dumps(value, allow_nan=True).encode()
    digest = hashlib.sha256(content).hexdigest()
    return b"%s sha256=%s bytes=%d\n" % (ENTRY_HEADER, digest.encode(), len(content)) + content


def decode_entry(data: bytes) -> dict:
    """The value of a cache entry; ``ValueError`` saying what is wrong when it is truncated,
    changed or not an entry. Entries written before they had a first line (plain JSON
    objects) are still read."""
    if not data.startswith(ENTRY_HEADER):
        if not data.startswith(b"{"):
            raise ValueError("not a cache entry")
        content = data  # an entry from before checksums: it must at least parse
    else:
        header, newline, content = data.partition(b"\n")
        match = re.fullmatch(rb"ovfdlr-cache-entry sha256=([0-9a-f]{64}) bytes=(\d+)", header)
        if not newline or match is None:
            raise ValueError("truncated or damaged first line")
        if len(content) != int(match.group(2)):
            raise ValueError(f"{len(content)} bytes of content, {int(match.group(2))} expected")
        if hashlib.sha256(content).hexdigest() != match.group(1).decode():
            raise ValueError("checksum mismatch")
    try:
        value = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


class CaseCache:
    """Entries under ``root/<namespace>/<key[:2]>/<key>.json`` (and the file digest index).

    Floats survive exactly: Python's JSON writes the shortest repr that reads back to the same
    double, and NaN / infinity are kept. Each entry carries its checksum (:func:`encode_entry`);
    a damaged one is reported, listed in :attr:`damaged` with the reason, removed and treated
    as missing.
    """

    def __init__(self, root: str | Path, namespace: str):
        self.root = Path(root) / namespace
        self.digests = DigestIndex(root)
        self.damaged: list[tuple[Path, str]] = []

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self.path(key)
        try:
            return decode_entry(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # truncated, changed or unreadable: recomputed
            self.damaged.append(report_damaged(path, str(exc) or type(exc).__name__))
            with contextlib.suppress(OSError):  # put() replaces it in any case
                path.unlink(missing_ok=True)
            return None

    def put(self, key: str, value: dict) -> None:
        atomic_write_bytes(self.path(key), encode_entry(value))


__all__ = [
    "CaseCache",
    "DigestIndex",
    "WriteError",
    "atomic_write_bytes",
    "decode_entry",
    "default_cache_dir",
    "encode_entry",
    "file_digest",
    "report_damaged",
    "stable_hash",
]
