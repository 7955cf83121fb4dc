"""Every built .deb passes `lintian --fail-on error`; overrides only for archive-policy tags."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.system.conftest import LintianRun

pytestmark = pytest.mark.system

# Tags the packages may override: what a venv in /opt built from upstream wheels implies for a
# package meant for devices, not for the Debian archive (each explained in its overrides file).
ALLOWED_OVERRIDES = {
    "dir-or-file-in-opt",
    "wrong-path-for-interpreter",
    "embedded-library",
    "unstripped-binary-or-object",
    "custom-library-search-path",
    "library-not-linked-against-libc",
    "shared-library-lacks-prerequisites",
    "statically-linked-binary",
    # Debian Python Policy 3.7: byte code built at install; these packages ship their own.
    "package-installs-python-bytecode",
    "package-installs-python-pycache-dir",
}
OVERRIDES = sorted(Path(__file__).resolve().parents[2].glob("packaging/deb/*/lintian-overrides"))


def test_every_override_is_an_archive_policy_tag_with_a_reason() -> None:
    assert len(OVERRIDES) == 2
    for path in OVERRIDES:
        lines = path.read_text(encoding="utf-8").splitlines()
        tags = {
            (index, re.split(r"\s+", line.split(":", 1)[1].strip())[0])
            for index, line in enumerate(lines)
            if line.strip() and not line.startswith("#")
        }
        assert tags, path
        overriding = {index for index, _ in tags}
        for index, tag in tags:
            assert tag in ALLOWED_OVERRIDES, f"{path.name}: {tag} is not an archive-policy tag"
            above = index - 1  # a group of overrides may share the comment above the group
            while above in overriding:
                above -= 1
            assert above >= 0 and lines[above].startswith("#"), f"{path}: {tag} has no reason"


@pytest.mark.timeout(1500)
def test_lintian_finds_no_errors_in_any_package(lintian_run: LintianRun) -> None:
    names = {p.name.split("_")[0] + "_" + p.stem.rsplit("_", 1)[-1] for p in lintian_run.debs}
    assert {"fl-edge-agent_amd64", "fl-edge-agent_arm64", "fl-coordinator_amd64"} <= names
    status, output, seconds = lintian_run.result(timeout=1400)
    print(f"\nlintian on {len(lintian_run.debs)} packages: done {seconds:.0f} s after the build")
    print(output[-3000:])
    errors = [line for line in output.splitlines() if line.startswith("E: ")]
    assert status == 0 and not errors, output[-6000:]
