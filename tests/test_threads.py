"""CPU threads: no more than the process may use, and OpenMP threads that do not spin long on a shared machine."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tell_me_why._utils import devices
from tell_me_why.app import cli


@pytest.mark.parametrize("quota, expected", [("150000 100000", 2), ("50000 100000", 1), ("max 100000", None),
                                             ("garbage", None)])
def test_available_cpus_reads_the_affinity_and_a_cgroup_quota(tmp_path, monkeypatch, quota, expected):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(quota + "\n")
    monkeypatch.setattr(devices, "_CGROUP_CPU_MAX", cpu_max)
    affinity = len(os.sched_getaffinity(0))
    assert devices.available_cpus() == (affinity if expected is None else min(affinity, expected))
    monkeypatch.setattr(devices, "_CGROUP_CPU_MAX", tmp_path / "missing")
    assert devices.available_cpus() == affinity


def test_the_command_line_uses_no_more_threads_than_cpus(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(cli, "available_cpus", lambda: 1)
    try:
        torch.set_num_threads(2)
        cli._use_available_cpus()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def _spin_count_after(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | env
    result = subprocess.run([sys.executable, "-c", code + "; import os; print(os.environ.get('GOMP_SPINCOUNT'))"],
                            capture_output=True, text=True, env=environment, check=True)
    return result.stdout.strip().splitlines()[-1]


def test_openmp_spins_briefly_unless_the_user_or_an_earlier_torch_import_decided():
    assert _spin_count_after("import tell_me_why") == "10000"
    assert _spin_count_after("import tell_me_why", GOMP_SPINCOUNT="300000") == "300000"
    assert _spin_count_after("import tell_me_why", OMP_WAIT_POLICY="ACTIVE") == "None"
    assert _spin_count_after("import torch, tell_me_why") == "None"  # too late to matter: left alone
