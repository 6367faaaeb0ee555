"""Atomic file writes, JSON and safetensors checkpoints (loading never runs code from the file)."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

__all__ = [
    "PATH_COLUMN",
    "atomic_path",
    "write_json",
    "write_parquet",
    "save_weights",
    "load_weights",
    "CheckpointError",
]

# The column that names the image file of each row in the package's tables (the original's name).
PATH_COLUMN = "Source_File_Path"


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
    finally:
        tmp.unlink(missing_ok=True)


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
    device = next((p.device for p in model.parameters()), None)
    try:
        state = load_file(str(path), device=str(device) if device is not None else "cpu")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"Cannot read checkpoint {path}: {exc}. Is it a safetensors file?") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"Checkpoint {path} does not match this model: {exc}") from exc
    return model
