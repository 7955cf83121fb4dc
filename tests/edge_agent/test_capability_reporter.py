"""Capabilities go to the coordinator at start and again only when they change."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import httpx

from fl_edge_agent.capability_reporter import CapabilityReporter
from fl_edge_agent.coordinator_client import CoordinatorClient
from fl_shared.capabilities import Capabilities, JetsonInfo, SpeedScore


class FakeProbe:
    """Stands in for the `fl-edge-agent probe --json` child process."""

    def __init__(self) -> None:
        self.power_mode = 0
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout_s: float) -> str:
        self.calls.append(list(argv))
        caps = Capabilities(
            jetson=JetsonInfo(model="NVIDIA Jetson Xavier NX", power_mode_id=self.power_mode),
            speed=SpeedScore(torch_train_samples_per_s=0.0 if "--no-benchmark" in argv else 500.0),
        )
        return caps.model_dump_json()


def _reporter(tmp_path: Path, probe: object, sent: list[dict[str, object]]) -> CapabilityReporter:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "PUT"
        assert request.url.path == "/api/v1/devices/dev-1/capabilities"
        sent.append(json.loads(request.content))
        return httpx.Response(204)

    client = CoordinatorClient("http://coord", transport=httpx.MockTransport(handler))
    return CapabilityReporter(
        client,
        lambda: "dev-1",
        state_dir=tmp_path,
        coordinator_url="http://coord",
        run=probe,  # type: ignore[arg-type]
    )


def test_sends_at_start_and_only_on_change(tmp_path: Path) -> None:
    probe, sent = FakeProbe(), []
    reporter = _reporter(tmp_path, probe, sent)
    assert reporter.probe() is not None and reporter.report()
    assert "--no-benchmark" not in probe.calls[0]  # the first probe measures speed
    assert len(sent) == 1 and sent[0]["speed"]["torch_train_samples_per_s"] == 500.0

    reporter.probe()
    assert "--no-benchmark" in probe.calls[1]  # later ones only re-read the device
    assert not reporter.report()  # nothing changed: nothing sent
    probe.power_mode = 2
    reporter.probe()
    assert reporter.report()
    assert sent[-1]["jetson"]["power_mode_id"] == 2
    assert sent[-1]["speed"]["torch_train_samples_per_s"] == 500.0  # speed kept from start
    assert reporter.report(force=True)  # e.g. after a reconnect
    assert len(sent) == 3


def test_a_failing_probe_sends_nothing(tmp_path: Path) -> None:
    def broken(argv: Sequence[str], timeout_s: float) -> str:
        raise subprocess.CalledProcessError(1, list(argv), stderr="boom")

    sent: list[dict[str, object]] = []
    reporter = _reporter(tmp_path, broken, sent)
    assert reporter.probe() is None and not reporter.report()
    assert sent == []


def test_probe_runs_in_a_child_process(tmp_path: Path) -> None:
    reporter = CapabilityReporter(
        CoordinatorClient("http://coord"),
        lambda: "dev-1",
        state_dir=tmp_path,
        coordinator_url="http://127.0.0.1:9",
        budget_s=0.5,
    )
    caps = reporter.probe()  # the real `fl-edge-agent probe --json`, without benchmark mocks
    assert caps is not None and caps.cpu.cores >= 1
    assert caps.speed.torch_train_samples_per_s is not None
