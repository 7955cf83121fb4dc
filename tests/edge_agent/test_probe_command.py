"""`probe_main`: JSON that parses as Capabilities, and a short human summary."""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path

import pytest

from fl_edge_agent.errors import EXIT_CONFIG, EXIT_OK
from fl_edge_agent.probe_command import add_probe_arguments, probe_main
from fl_shared.capabilities import Capabilities

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _no_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.upper().startswith("FL_AGENT_"):
            monkeypatch.delenv(key)


def _closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_json_output_parses_as_capabilities(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--json", "--state-dir", str(tmp_path), "--coordinator-url", _closed_url()]
    assert probe_main([*argv, "--budget-s", "1", "--model", "mlp"]) == EXIT_OK
    out = capsys.readouterr().out
    caps = Capabilities.model_validate(json.loads(out))
    assert caps.disk.path == str(tmp_path)
    assert caps.speed.torch_model == "mlp"
    assert caps.speed.budget_s == 1.0
    assert "CPUExecutionProvider" in caps.onnxruntime.verified_providers
    assert "speed.coordinator_rtt" in {e.what for e in caps.probe_errors}


def test_human_summary_has_the_key_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.ArgumentParser()
    add_probe_arguments(args)
    options = args.parse_args(
        [
            "--state-dir",
            str(tmp_path),
            "--no-benchmark",
            "--root",
            str(FIXTURES / "jetson-xavier-nx"),
        ]
    )
    assert probe_main(options) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    keys = [line.split()[0] for line in lines if line and not line.startswith(" ")]
    for key in (
        "device",
        "os",
        "cpu",
        "memory",
        "disk",
        "gpu",
        "jetson",
        "cuda",
        "onnxruntime",
        "speed",
        "thermal",
        "probe",
    ):
        assert key in keys
    text = "\n".join(lines)
    assert "NVIDIA Jetson Xavier NX Developer Kit (tegra194, p3668-0001)" in text
    assert "L4T 35.4.1 (JetPack 5.1.2), power mode 2 MODE_15W_6CORE, GPU 115-1109 MHz" in text
    assert "Ubuntu 20.04.6 LTS" in text
    # the values line up in one column
    starts = {line.index(line.split(maxsplit=1)[1]) for line in lines if not line.startswith(" ")}
    assert len(starts) == 1


def test_unknown_model_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert probe_main(["--state-dir", str(tmp_path), "--model", "gpt5"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model" in err and "cnn" in err


def test_bad_coordinator_url_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--state-dir", str(tmp_path), "--coordinator-url", "ftp://x", "--no-benchmark"]
    assert probe_main(argv) == EXIT_CONFIG
    assert "coordinator_url" in capsys.readouterr().err
