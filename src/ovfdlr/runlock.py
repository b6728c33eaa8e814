"""One writer per run folder.

``ovfdlr run`` (and ``ovfdlr report``, which writes into the folder) holds ``RUN/.run.lock``
while it writes: an exclusive ``flock`` on the file, which the kernel releases when the process
ends however it ends, and a JSON body naming the holder (host, pid, start time, command). A
second writer finds the lock taken and is refused with :class:`RunFolderBusy`, whose message
names the holder. A lock file whose lock nobody holds but whose body is still there was left by
a run that was killed: it is taken over, and :attr:`RunLock.stale` names that run (the caller
logs it). The holder removes the file when it releases the lock, normally or on an exception.

Where the file system has no ``flock`` (some network file systems), the body decides: a holder
on this host whose process is alive, or one on another host, keeps the folder busy.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from ovfdlr.atomic import WriteError, write_failure
from ovfdlr.layout import RunLayout

_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


class RunFolderBusy(RuntimeError):
    """Another live process is writing the run folder; the message names it."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a run folder's lock."""

    host: str
    pid: int
    started: str
    command: str = ""

    @classmethod
    def me(cls) -> LockHolder:
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            started=datetime.now(UTC).isoformat(timespec="seconds"),
            command=_command(),
        )

    @classmethod
    def parse(cls, data: bytes) -> LockHolder | None:
        """The holder a lock file's body names; ``None`` for an empty or unreadable body."""
        try:
            value = json.loads(data.decode())
            return cls(
                host=str(value["host"]),
                pid=int(value["pid"]),
                started=str(value["started"]),
                command=str(value.get("command", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def describe(self) -> str:
        return f"host {self.host}, pid {self.pid}, started {self.started}"

    def alive(self) -> bool:
        """Whether the process still runs (always assumed for another host: it cannot be
        asked)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process
            return True
        return True


def _command() -> str:
    """This process's command line (``ovfdlr run ...`` however ovfdlr was started)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if name in ("__main__.py", "ovfdlr"):
        name = "ovfdlr"
    return " ".join([name, *sys.argv[1:]])


def _read(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


class RunLock:
    """The lock of one run folder; a context manager (``with RunLock(folder) as lock:``).

    :meth:`acquire` raises :class:`RunFolderBusy` when a live process holds it; ``stale`` is
    then the holder of a lock taken over from a killed run (``None`` otherwise).
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = RunLayout(self.folder).lock_file
        self.stale: LockHolder | None = None
        self.holder: LockHolder | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _busy(self, holder: LockHolder | None) -> RunFolderBusy:
        who = holder.describe() if holder else "a process that did not say who it is"
        command = f": {holder.command}" if holder and holder.command else ""
        return RunFolderBusy(
            f"the run folder {self.folder} is in use by another run ({who}{command}); wait "
            f"for it to end or stop it (a run on another host that is gone: remove {self.path})"
        )

    def _open_locked(self) -> int:
        """An open descriptor of the lock file with the exclusive lock held (the file the
        path names now, not one its previous holder removed meanwhile)."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = LockHolder.parse(_read(fd))
                os.close(fd)
                raise self._busy(holder) from None
            except OSError as exc:
                if exc.errno not in _NO_FLOCK:
                    os.close(fd)
                    raise
                holder = LockHolder.parse(_read(fd))  # no flock here: the body decides
                if holder is not None and holder.pid != os.getpid() and holder.alive():
                    os.close(fd)
                    raise self._busy(holder) from None
                return fd
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)  # released and removed between our open and our lock: again

    def acquire(self) -> RunLock:
        """Take the lock (the folder must exist); refuse with :class:`RunFolderBusy`."""
        if self._fd is not None:
            return self
        fd = self._open_locked()
        try:
            self.stale = LockHolder.parse(_read(fd))
            self.holder = LockHolder.me()
            body = json.dumps(asdict(self.holder)).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, body, 0)
        except BaseException as exc:
            os.close(fd)
            failure = write_failure(exc)
            if failure is not None:
                raise WriteError(self.path, failure[1], failure[0]) from exc
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and let the lock go (nothing when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                self.path.unlink()
        except OSError:
            pass  # already gone: the lock goes with the descriptor anyway
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *_) -> None:
        self.release()


__all__ = ["LockHolder", "RunFolderBusy", "RunLock"]
