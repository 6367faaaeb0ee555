"""Which device to run on, and how many CPUs this process may use."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

__all__ = ["default_device", "module_device", "available_cpus"]

_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cpus() -> int:
    """CPUs this process may actually use: its CPU affinity, capped by a cgroup CPU quota (containers, batch
    schedulers), at least 1. ``os.cpu_count()`` counts the machine's CPUs, which a container may not have."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        count = os.cpu_count() or 1
    try:
        quota, period = _CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            count = min(count, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, count)


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (else its first buffer); the CPU for a module without either."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def default_device() -> torch.device:
    """CUDA when available, then Apple MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
