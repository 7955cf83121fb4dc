"""Tests for fl_shared.flower_env: private FLWR_HOME, no phoning home, PATH, NO_PROXY."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from fl_shared.flower_env import flower_env

BIN_DIR = str(Path(sys.executable).parent)


def test_flwr_home_is_set(tmp_path: Path) -> None:
    env = flower_env(tmp_path / "home", base={"PATH": "/usr/bin"})
    assert env["FLWR_HOME"] == str(tmp_path / "home")


def test_telemetry_and_update_check_are_off(tmp_path: Path) -> None:
    env = flower_env(tmp_path, base={"FLWR_TELEMETRY_ENABLED": "1"})
    assert env["FLWR_TELEMETRY_ENABLED"] == "0"
    assert env["FLWR_DISABLE_UPDATE_CHECK"] == "1"
    assert env["HF_HUB_DISABLE_TELEMETRY"] == "1"


def test_interpreter_bin_dir_goes_first(tmp_path: Path) -> None:
    env = flower_env(tmp_path, base={"PATH": "/usr/local/bin:/usr/bin"})
    parts = env["PATH"].split(os.pathsep)
    assert parts[0] == BIN_DIR
    assert parts[1:] == ["/usr/local/bin", "/usr/bin"]


def test_empty_path_gets_only_the_bin_dir(tmp_path: Path) -> None:
    assert flower_env(tmp_path, base={})["PATH"] == BIN_DIR


def test_bin_dir_already_first_is_not_duplicated(tmp_path: Path) -> None:
    path = os.pathsep.join([BIN_DIR, "/usr/bin"])
    env = flower_env(tmp_path, base={"PATH": path})
    assert env["PATH"] == path


def test_bin_dir_later_on_path_is_moved_first(tmp_path: Path) -> None:
    # Regression: flower_env (flower_env.py:20-21) only prepends the interpreter's bin dir when it
    # is absent from PATH. With PATH="/usr/local/bin:<venv>/bin" it stays second, so a
    # system-wide flower-superexec / flwr-clientapp in /usr/local/bin shadows the venv's
    # (the docstring says the bin dir "goes first"). Fix: drop bin_dir from the existing
    # entries and always put it in front.
    path = os.pathsep.join(["/usr/local/bin", BIN_DIR, "/usr/bin"])
    env = flower_env(tmp_path, base={"PATH": path})
    parts = env["PATH"].split(os.pathsep)
    assert parts[0] == BIN_DIR
    assert parts.count(BIN_DIR) == 1


def test_no_proxy_covers_loopback_and_keeps_existing(tmp_path: Path) -> None:
    env = flower_env(tmp_path, base={"NO_PROXY": "corp.example,10.0.0.0/8"})
    entries = set(env["NO_PROXY"].split(","))
    assert {"127.0.0.1", "localhost", "::1", "corp.example", "10.0.0.0/8"} <= entries
    assert env["no_proxy"] == env["NO_PROXY"]
    assert "" not in entries


def test_no_proxy_without_existing_value(tmp_path: Path) -> None:
    env = flower_env(tmp_path, base={})
    assert "127.0.0.1" in env["NO_PROXY"].split(",")
    assert "127.0.0.1" in env["no_proxy"].split(",")


def test_lowercase_no_proxy_entries_are_kept(tmp_path: Path) -> None:
    # Regression: flower_env (flower_env.py:26-28) merges only the upper-case NO_PROXY and then
    # overwrites no_proxy, so entries set only in the (common on Linux) lower-case no_proxy
    # are lost: with https_proxy set, Flower's gRPC traffic to e.g. superlink.internal then
    # goes through the proxy. Fix: merge both NO_PROXY and no_proxy before writing them back.
    env = flower_env(tmp_path, base={"no_proxy": "superlink.internal"})
    assert "superlink.internal" in env["no_proxy"].split(",")
    assert "superlink.internal" in env["NO_PROXY"].split(",")


def test_pythonunbuffered_default_and_override(tmp_path: Path) -> None:
    assert flower_env(tmp_path, base={})["PYTHONUNBUFFERED"] == "1"
    assert flower_env(tmp_path, base={"PYTHONUNBUFFERED": "0"})["PYTHONUNBUFFERED"] == "0"


def test_base_mapping_is_not_modified(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin", "KEEP": "me"}
    env = flower_env(tmp_path, base=base)
    assert base == {"PATH": "/usr/bin", "KEEP": "me"}
    assert env["KEEP"] == "me"


def test_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWER_ENV_TEST_MARKER", "present")
    monkeypatch.setenv("PATH", "/usr/bin")
    before = dict(os.environ)
    env = flower_env(tmp_path)
    assert env["FLOWER_ENV_TEST_MARKER"] == "present"
    assert env["PATH"].split(os.pathsep)[0] == BIN_DIR
    assert dict(os.environ) == before, "flower_env must not touch os.environ"
