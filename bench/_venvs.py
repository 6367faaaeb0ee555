"""The peers' virtual environments, created by the bench scripts on first use (git-ignored)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TMW_VENV = HERE / ".venv-tmw"
TORCH_SPEC = ["torch==2.14.1", "torchvision==0.29.1"]


def ensure_original_venv() -> Path:
    """Python of bench/.venv-tmw with torch, torchvision and tmw-xai 0.0.2 from PyPI."""
    python = TMW_VENV / "bin" / "python"
    probe = [str(python), "-c", "import tell_me_why.training, importlib.metadata as m; print(m.version('tmw-xai'))"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"Creating {TMW_VENV} with tmw-xai 0.0.2 (a few minutes, once)...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(TMW_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *TORCH_SPEC], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "tmw-xai==0.0.2"], check=True)
    return python
