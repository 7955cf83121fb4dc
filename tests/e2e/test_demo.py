"""`fl-coordinator demo` as `make demo` runs it (small settings): progress, result, clean stop."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from fl_coordinator.local_fleet import program
from fl_coordinator.model_store import ModelStore

pytestmark = pytest.mark.e2e


def test_demo_trains_reports_each_round_and_stops_everything(
    tmp_path: Path, leftover_processes: Callable[[str], list[int]]
) -> None:
    state = tmp_path / "demo"
    result = subprocess.run(
        [
            program("fl-coordinator"),
            "demo",
            "--state-dir",
            str(state),
            "--devices",
            "2",
            "--rounds",
            "2",
            "--model",
            "mlp",
            "--dataset",
            "digits",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert re.search(
        r"^round 1/2  devices 2  loss \d\.\d{4}  accuracy \d\.\d{4}  [\d.]+ s$", out, re.M
    )
    assert re.search(r"^round 2/2  devices 2 ", out, re.M)
    accuracy = float(re.search(r"final global test accuracy: (\d\.\d+)", out).group(1))  # type: ignore[union-attr]
    assert accuracy > 0.5
    checkpoint = Path(re.search(r"checkpoint: (\S+)", out).group(1))  # type: ignore[union-attr]
    assert checkpoint.is_relative_to(state)
    _model, meta = ModelStore.load(checkpoint)
    assert meta["round"] == 2 and meta["architecture"] == "mlp"
    assert leftover_processes(str(state)) == []  # coordinator, agents, Flower: all gone
