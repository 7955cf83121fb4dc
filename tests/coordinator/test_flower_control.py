"""The FAB a run is submitted with."""

from __future__ import annotations

import io
import tomllib
import zipfile

from fl_coordinator.flower_control import CLIENTAPP_REF, SERVERAPP_REF, build_fab


def test_fab_names_installed_components_and_carries_the_run_config() -> None:
    fab = build_fab({"model": "cnn", "num-rounds": 3, "learning-rate": 0.01})
    with zipfile.ZipFile(io.BytesIO(fab)) as archive:
        pyproject = tomllib.loads(archive.read("pyproject.toml").decode())
    app = pyproject["tool"]["flwr"]["app"]
    assert app["components"] == {"serverapp": SERVERAPP_REF, "clientapp": CLIENTAPP_REF}
    assert app["config"] == {"model": "cnn", "num-rounds": 3, "learning-rate": 0.01}


def test_different_configs_make_different_fabs() -> None:
    assert build_fab({"seed": 1}) != build_fab({"seed": 2})
