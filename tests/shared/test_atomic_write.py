"""Tests for fl_shared.atomic_write: replace, mode, no temp files, failure keeps old file."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import BinaryIO

import pytest

from fl_shared.atomic_write import atomic_write, atomic_write_bytes


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_creates_file_and_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file.bin"
    atomic_write_bytes(target, b"hello")
    assert target.read_bytes() == b"hello"
    assert _names(target.parent) == ["file.bin"]


def test_replaces_content(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old content that is longer than the new one")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert _names(tmp_path) == ["state.json"]


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o400])
def test_mode_is_applied(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "secret"
    atomic_write_bytes(target, b"x", mode=mode)
    assert stat.S_IMODE(target.stat().st_mode) == mode


def test_mode_replaces_old_mode(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    target.chmod(0o666)
    atomic_write_bytes(target, b"new", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_default_mode_is_0644(tmp_path: Path) -> None:
    target = tmp_path / "f"
    atomic_write_bytes(target, b"x")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_callback_writes_in_pieces(tmp_path: Path) -> None:
    target = tmp_path / "f"

    def write(fh: BinaryIO) -> None:
        fh.write(b"part1,")
        fh.write(b"part2")

    atomic_write(target, write)
    assert target.read_bytes() == b"part1,part2"
    assert _names(tmp_path) == ["f"]


def test_failing_callback_keeps_old_content_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(b"good old model")

    def write(fh: BinaryIO) -> None:
        fh.write(b"half a new mod")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, write, mode=0o600)
    assert target.read_bytes() == b"good old model"
    assert _names(tmp_path) == ["model.pt"]


def test_failing_callback_on_new_file_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new.bin"

    def write(fh: BinaryIO) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write)
    assert _names(tmp_path) == []


def test_many_writes_leave_only_the_target(tmp_path: Path) -> None:
    target = tmp_path / "counter"
    for i in range(20):
        atomic_write_bytes(target, str(i).encode())
    assert target.read_bytes() == b"19"
    assert _names(tmp_path) == ["counter"]
