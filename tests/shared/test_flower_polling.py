"""Tests for fl_shared.flower_polling: adaptive waits; Flower still has the shapes we patch."""

from __future__ import annotations

import subprocess
import sys
import time
from types import ModuleType
from typing import Any

import pytest

from fl_shared import flower_polling
from fl_shared.flower_polling import AdaptiveTime, PollSettings, fast_object_pulls


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    calls: list[float] = []
    monkeypatch.setattr(time, "sleep", calls.append)
    return calls


def test_idle_pull_waits_flowers_3_s_until_a_message_was_seen(slept: list[float]) -> None:
    shim = AdaptiveTime(PollSettings(hot_poll_s=0.1, hot_window_s=60.0))
    shim.sleep(3)
    assert slept == [3.0]


def test_idle_pull_polls_fast_within_the_hot_window(
    slept: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    shim = AdaptiveTime(PollSettings(hot_poll_s=0.1, hot_window_s=60.0, idle_poll_s=3.0))
    shim.message_seen()
    now[0] += 59.0
    shim.sleep(3)
    now[0] += 2.0  # 61 s after the message: back to idle polling
    shim.sleep(3)
    assert slept == [0.1, 3.0]


def test_reply_wait_shortened_other_sleeps_unchanged(slept: list[float]) -> None:
    shim = AdaptiveTime(PollSettings(reply_poll_s=0.02))
    shim.sleep(0.5)
    shim.sleep(1.25)
    assert slept == [0.02, 1.25]
    assert shim.monotonic is time.monotonic  # everything else is the real time module


def test_fast_object_pulls_caps_the_backoff() -> None:
    seen: list[dict[str, Any]] = []

    def pull_objects(
        ids: list[str], *, initial_backoff: float = 1.0, backoff_cap: float = 10.0
    ) -> str:
        seen.append({"initial_backoff": initial_backoff, "backoff_cap": backoff_cap})
        return "objects"

    module = ModuleType("fake_flower")
    module.pull_objects = pull_objects  # type: ignore[attr-defined]
    assert fast_object_pulls(module)
    assert fast_object_pulls(module)  # twice is harmless: not wrapped again
    assert module.pull_objects(["a"]) == "objects"
    assert module.pull_objects(["a"], initial_backoff=0.01, backoff_cap=0.1) == "objects"
    assert seen == [
        {"initial_backoff": 0.02, "backoff_cap": 0.5},
        {"initial_backoff": 0.01, "backoff_cap": 0.1},
    ]


def test_fast_object_pulls_leaves_an_unknown_shape_alone() -> None:
    def pull_objects(ids: list[str]) -> None:  # a future Flower without the backoff knobs
        return None

    module = ModuleType("fake_flower")
    module.pull_objects = pull_objects  # type: ignore[attr-defined]
    assert not fast_object_pulls(module)
    assert module.pull_objects is pull_objects
    assert not fast_object_pulls(ModuleType("no_pull_objects_at_all"))


def test_installed_flower_has_the_shapes_we_patch() -> None:
    # If a Flower upgrade moves these, this fails here instead of rounds silently going slow.
    code = (
        "from fl_shared.flower_polling import PollSettings, patch_supernode, fast_object_pulls\n"
        "from flwr.supernode import start_client_internal as sci\n"
        "from flwr.supercore.inflatable import inflatable_utils\n"
        "from flwr.superlink.grid import http_grid\n"
        "shim = patch_supernode(PollSettings())\n"
        "assert shim is not None and sci.time is shim, 'SuperNode polling not patched'\n"
        "assert sci.pull_objects.fl_fast\n"
        "assert fast_object_pulls(inflatable_utils) and fast_object_pulls(http_grid)\n"
        "print('patched')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "patched" in out.stdout
    assert "flower_patch_skipped" not in out.stdout + out.stderr


def test_patch_is_skipped_when_flowers_literals_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    from flwr.supernode import start_client_internal as sci

    monkeypatch.setattr(flower_polling, "_source_has", lambda module, *needles: False)
    monkeypatch.setattr(sci, "pull_objects", sci.pull_objects)  # restored after the test
    before = sci.time
    assert flower_polling.patch_supernode(PollSettings()) is None
    assert sci.time is before


def test_fast_object_pulls_can_bound_the_tries_per_object() -> None:
    seen: list[int | None] = []

    def pull_objects(
        ids: list[str],
        *,
        initial_backoff: float = 1.0,
        backoff_cap: float = 10.0,
        max_tries_per_object: int | None = 500,
    ) -> None:
        seen.append(max_tries_per_object)

    module = ModuleType("fake_flower")
    module.pull_objects = pull_objects  # type: ignore[attr-defined]
    assert fast_object_pulls(module, max_tries_per_object=600)
    module.pull_objects(["a"])
    assert seen == [600]
