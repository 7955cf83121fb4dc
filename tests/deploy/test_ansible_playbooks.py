"""deploy/ansible passes ``ansible-lint --offline`` (production profile) and every playbook parses.

Cheap checks without a fleet: the playbooks run against containers in
tests/system/test_ansible_fleet.py. ansible-core and ansible-lint come from requirements-dev.txt
(pinned there); both are taken from this test's own venv, never from PATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ANSIBLE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "ansible"
PLAYBOOKS = sorted(p.name for p in ANSIBLE_DIR.glob("*.yml"))
BIN_DIR = Path(sys.executable).parent


def _tool(name: str) -> Path:
    path = BIN_DIR / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: pip install -r requirements-dev.txt", pytrace=False)
    return path


def _run(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # The venv's bin first (ansible-lint runs ansible-playbook); Ansible's own files in tmp.
    env = {
        **os.environ,
        "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
    }
    return subprocess.run(
        argv, cwd=ANSIBLE_DIR, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_every_playbook_is_found() -> None:
    assert PLAYBOOKS == [
        "decommission.yml",
        "rollback.yml",
        "rollout.yml",
        "site.yml",
        "upgrade.yml",
    ]


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_syntax(playbook: str, tmp_path: Path) -> None:
    done = _run(
        [str(_tool("ansible-playbook")), "--syntax-check", "-i", "inventory/example/hosts.yml",
         playbook],
        tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.timeout(300)
def test_ansible_lint_offline_production_profile(tmp_path: Path) -> None:
    # .ansible-lint holds the profile (production) and offline: true; --offline also on the
    # command line, so no run of this test ever reaches Galaxy.
    done = _run([str(_tool("ansible-lint")), "--offline", "--nocolor"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Profile 'production' was required, and it passed" in done.stdout + done.stderr
