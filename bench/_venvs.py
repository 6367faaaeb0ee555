"""The peers' virtual environments, created by the bench scripts on first use (git-ignored)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TORCH_SPEC = ["torch==2.14.1", "torchvision==0.29.1"]


def _ensure_venv(folder: Path, requirement: str, distribution: str, probe_module: str, extra: str = "") -> Path:
    """Python of ``folder``, a venv with torch and torchvision first (from this machine's disk), then
    ``requirement`` (and ``extra``, what the worker needs of Tell Me Why's own dependencies); created once, reused
    while ``probe_module`` imports."""
    python = folder / "bin" / "python"
    probe = [str(python), "-c", f"import {probe_module}, importlib.metadata as m; print(m.version('{distribution}'))"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"Creating {folder} with {requirement} (a few minutes, once)...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *TORCH_SPEC], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", requirement, *extra.split()], check=True)
    return python


def ensure_original_venv() -> Path:
    """bench/.venv-tmw: the original Tell Me Why, tmw-xai 0.0.2."""
    return _ensure_venv(HERE / ".venv-tmw", "tmw-xai==0.0.2", "tmw-xai", "tell_me_why.training")


def ensure_rex_venv() -> Path:
    """bench/.venv-rex: the reference causal explainer, rex-xai 0.4.1."""
    return _ensure_venv(HERE / ".venv-rex", "rex-xai==0.4.1", "rex-xai", "rex_xai.explanation.rex, safetensors",
                        extra="safetensors")


def ensure_gradcam_venv() -> Path:
    """bench/.venv-gradcam: pytorch-grad-cam (PyPI ``grad-cam``), the usual Grad-CAM++ implementation."""
    return _ensure_venv(HERE / ".venv-gradcam", "grad-cam==1.5.5", "grad-cam", "pytorch_grad_cam")


def run_json_worker(command: list[str], env: dict[str, str], cwd: Path | None = None, label: str = "worker"):
    """Run a worker script and return the JSON it prints on its last ``RESULT `` line (errors show its output)."""
    completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"{label} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])
