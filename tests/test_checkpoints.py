"""Atomic writes: an interrupted write leaves the old file, a finished one has the usual permissions."""

from __future__ import annotations

import os
import stat

import pytest

from tell_me_why._utils.files import atomic_path


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half writ")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_finished_write_has_the_permissions_open_would_give(tmp_path):
    with atomic_path(tmp_path / "atomic.txt") as tmp:
        tmp.write_text("new")
    (tmp_path / "plain.txt").write_text("new")
    mode = lambda name: stat.S_IMODE(os.stat(tmp_path / name).st_mode)  # noqa: E731
    assert mode("atomic.txt") == mode("plain.txt")
