"""One version: VERSION at the repository root, read by the three pyprojects and __version__."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from setuptools.config.pyprojecttoml import read_configuration

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = {"shared": "fl_shared", "coordinator": "fl_coordinator", "edge_agent": "fl_edge_agent"}


def _version() -> str:
    return (ROOT / "VERSION").read_text(encoding="utf-8").strip()


def test_version_file_holds_one_release_number() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", _version())


@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_pyproject_version_is_the_version_file(project: str) -> None:
    # setuptools itself expands the dynamic version, as `pip wheel` and `pip install -e` do.
    config = read_configuration(ROOT / project / "pyproject.toml", expand=True)
    assert config["project"]["version"].strip() == _version()


@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_package_version_file_links_to_the_root(project: str) -> None:
    linked = ROOT / project / "src" / PROJECTS[project] / "VERSION"
    assert linked.is_symlink()
    assert linked.resolve() == (ROOT / "VERSION").resolve()


@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_dunder_version_is_the_version_file(project: str) -> None:
    # Load this checkout's __init__.py, whatever copy of the package is installed.
    init = ROOT / project / "src" / PROJECTS[project] / "__init__.py"
    spec = importlib.util.spec_from_file_location(f"_version_check_{project}", init)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__version__ == _version()


def test_pins_between_the_distributions_accept_the_version() -> None:
    major_minor = ".".join(_version().split(".")[:2])
    for project in ("coordinator", "edge_agent"):
        config = read_configuration(ROOT / project / "pyproject.toml", expand=True)
        pins = [d for d in config["project"]["dependencies"] if d.startswith("fl-shared")]
        assert pins, f"{project} does not depend on fl-shared"
        for pin in pins:
            assert pin.endswith(f"=={major_minor}.*"), pin
