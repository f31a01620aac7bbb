"""The hub's data directory and the lock that lets only one live hub use it.

The lock is an `flock` on DATA/hub.lock: the kernel drops it when the holder's process dies, even by
SIGKILL, so a crashed hub never leaves a stale lock that someone has to delete by hand. The file also
records the holder's pid, only to name it in the error.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from services.common.errors import EmbeddedServerError

DATA_DIR_ENV = "SAFETYHUB_DATA_DIR"
LOCK_FILE = "hub.lock"


def default_data_dir() -> Path:
    """$SAFETYHUB_DATA_DIR if set, else ./.safetyhub."""
    configured = os.environ.get(DATA_DIR_ENV)
    return Path(configured) if configured else Path.cwd() / ".safetyhub"


class DataDirBusy(EmbeddedServerError):
    """Another live hub holds the data directory."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "another process"
        super().__init__(f"data dir {data_dir} is in use by a running hub ({holder})")


class DataDirLock:
    """Exclusive, non-blocking ownership of a data dir for the lifetime of one hub process."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # os.open makes the fd non-inheritable, so the servers we spawn do not keep the lock
            # alive after the hub dies.
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise EmbeddedServerError(f"cannot open the data dir lock {self._path}: {err}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise DataDirBusy(self.data_dir, self._holder_pid()) from err
            raise EmbeddedServerError(f"cannot lock {self._path}: {err}") from err
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Leave the file in place: unlinking it would let two hubs lock two different inodes.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None

    def is_held_by_other(self) -> bool:
        """Probe with a shared lock, which never blocks other probes and is dropped at once."""
        if self._fd is not None:
            return False
        try:
            fd = os.open(self._path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
                return True
            raise EmbeddedServerError(f"cannot probe {self._path}: {err}") from err
        finally:
            os.close(fd)
        return False

    def _holder_pid(self) -> int | None:
        try:
            text = self._path.read_text().strip()
        except OSError:
            return None
        # The holder writes its pid right after locking; a reader can land in between.
        return int(text) if text.isdigit() else None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
