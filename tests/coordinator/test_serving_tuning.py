"""tune_for_serving: what `fl-coordinator serve` does to its interpreter before it serves."""

from __future__ import annotations

import subprocess
import sys


def test_tuning_freezes_start_up_objects_and_shortens_the_switch_interval() -> None:
    # In a child interpreter: both settings are process-wide.
    code = (
        "import gc, sys\n"
        "from fl_coordinator.serving_tuning import tune_for_serving\n"
        "before = gc.get_freeze_count()\n"
        "tune_for_serving()\n"
        "print(before, gc.get_freeze_count(), sys.getswitchinterval())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    before, after, interval = int(out[0]), int(out[1]), float(out[2])
    assert before == 0 and after > 1_000  # the objects made so far are frozen
    assert interval == 0.001
