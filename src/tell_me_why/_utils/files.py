"""Atomic file writes, JSON and safetensors checkpoints (loading never runs code from the file)."""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .devices import module_device

__all__ = [
    "PATH_COLUMN",
    "atomic_path",
    "write_json",
    "write_parquet",
    "save_weights",
    "load_weights",
    "CheckpointError",
    "DirectoryLocked",
    "DirectoryLock",
]

# The column that names the image file of each row in the package's tables (the original's name).
PATH_COLUMN = "Source_File_Path"


logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or does not match the model."""


@functools.cache
def _umask() -> int:
    """The process umask, so that atomic files get the permissions a file created with open() would.

    Read from /proc where it is shown (Linux), else by setting and restoring it once, on first use (never at
    import: os.umask changes process-wide state).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    A crash or an exception leaves ``path`` as it was (old content or absent), never half written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it the permissions open() would
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)  # the rename itself reaches the disk
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str))
    return Path(path)


def write_parquet(table, path: str | Path) -> Path:
    """Write a pandas DataFrame as Parquet (no index), atomically."""
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    return Path(path)


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Save ``model.state_dict()`` as safetensors, atomically."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    return Path(path)


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a safetensors checkpoint into ``model`` strictly: every key must match, with the same shape."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}")
    try:
        state = load_file(str(path), device=str(module_device(model)))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"Cannot read checkpoint {path}: {exc}. Is it a safetensors file?") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"Checkpoint {path} does not match this model: {exc}") from exc
    return model


class DirectoryLocked(RuntimeError):
    """Another process holds the directory's lock; the message names it."""


class DirectoryLock:
    """One writer per directory: an advisory lock (``flock``) on ``<directory>/.lock`` that records the holder's pid,
    host and start time while it is held (the file is emptied on release).

    A second process fails at once with :class:`DirectoryLocked` naming the holder. The operating system drops
    the lock when its holder dies (even by ``kill -9``), so a lock file left by a dead process is taken over, with
    a warning naming it.
    """

    def __init__(self, directory: str | Path, name: str = ".lock") -> None:
        self.path = Path(directory) / name
        self._handle = None

    def acquire(self) -> DirectoryLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - kept open for as long as the lock is held
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise DirectoryLocked(f"{self.path.parent} is in use by {holder}; wait for it to finish, or use another "
                                  f"directory.") from None
        handle.seek(0)
        previous = handle.read().strip()
        if previous:
            logger.warning("Taking over the lock of %s: %s is no longer running (it stopped without releasing it).",
                           self.path.parent, previous)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is None:
            return
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.flush()
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None
        # The (now empty) file stays: removing it would let two processes lock two different files of one name.

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
