"""Writes that leave the old file or the new one, never half of one.

Every table, record and figure of a run folder and every cache entry is written through
:func:`atomic_path`: into a temporary file in the target's folder (``.<name>.<random>.tmp``),
then renamed over the target with :func:`os.replace` (atomic on POSIX file systems). A write
that fails removes its temporary file and leaves the target as it was. One that fails for want
of space (``ENOSPC``, ``EDQUOT``) or because the file would exceed the size limit (``EFBIG``)
raises :class:`WriteError`, whose message is one line naming the file and the reason (``cannot
write RUN/features/radiomics.parquet: no space left on device``).

A process killed in the middle of a write leaves its temporary file behind, never a truncated
target; :func:`remove_partial_files` clears those of a folder that no process is writing.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_SUFFIXES = (".tmp", ".partial")
"""How the temporary files of an interrupted write end (``.<name>.<random>.tmp``, and the
``.<name>.partial`` of a fine-tuned weights file)."""

_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large",
}


class WriteError(OSError):
    """A file that could not be written for want of space or over the size limit.

    ``str()`` is one line: ``cannot write PATH: no space left on device`` (or ``file too
    large``, ``disk quota exceeded``).
    """

    def __init__(self, path: str | Path, reason: str, code: int | None = None):
        super().__init__(code, reason, str(path))
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"

    def __reduce__(self):  # picklable across processes with its own arguments
        return (type(self), (self.path, self.reason, self.errno))


def write_failure(exc: BaseException | None) -> tuple[int, str] | None:
    """``(errno, reason)`` when ``exc`` (or an exception it was raised from) is a write that
    failed for want of space or over the size limit; ``None`` for any other exception."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, WriteError):
            return exc.errno, exc.reason
        if isinstance(exc, OSError) and exc.errno in _REASONS:
            return exc.errno, _REASONS[exc.errno]
        if isinstance(exc, Exception):  # libraries that keep the reason only in the message
            text = str(exc).lower()
            for code, reason in _REASONS.items():
                if os.strerror(code).lower() in text:
                    return code, reason
        exc = exc.__cause__ or exc.__context__
    return None


def _file_mode() -> int:
    """The mode a plain ``open()`` gives a new file under this process's umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it is renamed to
    ``path``, on any exception it is removed (and a write that failed for want of space or
    over the size limit becomes a :class:`WriteError` naming ``path``)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.chmod(name, _MODE)  # as an ordinary write would have made it, not mkstemp's 0600
    except OSError as exc:
        failure = write_failure(exc)
        if failure is None:
            raise
        raise WriteError(path, failure[1], failure[0]) from exc
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        failure = write_failure(exc)
        if failure is None or isinstance(exc, WriteError):
            raise
        raise WriteError(path, failure[1], failure[0]) from exc


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary)`` and rename the result to ``path``; e.g.
    ``atomic_write(out, frame.to_parquet)`` or
    ``atomic_write(out, lambda p: frame.to_csv(p, index=False))``. Returns ``path``."""
    with atomic_path(path) as temporary:
        write(temporary)
    return Path(path)


def remove_partial_files(folder: str | Path) -> list[Path]:
    """Remove the temporary files interrupted writes left under ``folder`` (only call it on a
    folder no other process is writing); return them."""
    removed = []
    for path in Path(folder).rglob(".*"):
        if path.is_file() and path.name.endswith(PARTIAL_SUFFIXES):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


__all__ = [
    "WriteError",
    "atomic_path",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "remove_partial_files",
    "write_failure",
]
