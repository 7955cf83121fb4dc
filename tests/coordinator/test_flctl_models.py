"""`flctl models` against a faked REST API: tables, JSON, downloads that are whole or absent."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from fl_coordinator.flctl import EXIT_USAGE, Api, CliError, _parser, execute
from fl_coordinator.flctl_api import EXIT_FAILURE

VERSION: dict[str, Any] = {
    "run_id": 7,
    "round": 3,
    "architecture": "cnn",
    "num_classes": 10,
    "dataset": "fashion-mnist",
    "data_dir": "/usr/share/datasets/fashion-mnist",
    "metrics": {"eval-accuracy": 0.8712, "eval-loss": 0.3538, "train-loss": 0.41},
    "eval_accuracy": 0.8712,
    "eval_loss": 0.3538,
    "sha256": "ab" * 32,
    "size_bytes": 4_809_686,
    "created_at": "2026-01-01T10:00:00Z",
    "checkpoint": "round-0003.pt",
    "best": True,
    "latest": False,
    "onnx": None,
}
LATEST = {**VERSION, "round": 4, "eval_accuracy": 0.85, "best": False, "latest": True}
RUN_MODELS = {
    "run_id": 7,
    "keep_last": 3,
    "best_round": 3,
    "latest_round": 4,
    "best": VERSION,
    "latest": LATEST,
    "versions": [VERSION, LATEST],
}
ONNX_BYTES = b"\x08\x09onnx-model-bytes" * 100


def _run(argv: list[str], handler: Any) -> tuple[int, str, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    args = _parser().parse_args(argv)
    out = io.StringIO()
    code = execute(args, Api("http://coord:8080", transport=httpx.MockTransport(record)), out)
    return code, out.getvalue(), seen


def _onnx(_request: httpx.Request, body: bytes = ONNX_BYTES) -> httpx.Response:
    return httpx.Response(
        200,
        content=body,
        headers={
            "content-type": "application/octet-stream",
            "x-model-sha256": hashlib.sha256(ONNX_BYTES).hexdigest(),
            "x-model-round": "3",
            "x-onnx-opset": "18",
            "x-torch-accuracy": "0.871200",
            "x-onnx-accuracy": "0.871100",
            "x-validation-samples": "10000",
            "x-checkpoint-sha256": "ab" * 32,
        },
    )


def test_list_table_and_run_filter() -> None:
    code, out, seen = _run(["models", "list"], lambda r: httpx.Response(200, json=[VERSION]))
    assert code == 0 and seen[0].url.path == "/api/v1/models"
    header, _rule, row = out.splitlines()
    assert header.split()[:6] == ["RUN", "ROUND", "MODEL", "DATASET", "ACCURACY", "LOSS"]
    assert row.split()[:7] == ["7", "3", "cnn", "fashion-mnist", "0.8712", "0.3538", "best"]
    _, out, seen = _run(
        ["--json", "models", "list", "--run", "7"], lambda r: httpx.Response(200, json=[VERSION])
    )
    assert seen[0].url.params["run_id"] == "7"
    assert json.loads(out) == [VERSION]


def test_show_a_run_and_one_round() -> None:
    code, out, seen = _run(["models", "show", "7"], lambda r: httpx.Response(200, json=RUN_MODELS))
    assert code == 0 and seen[0].url.path == "/api/v1/models/7"
    assert out.startswith("run 7: cnn on fashion-mnist, best round 3 (accuracy 0.8712), latest")
    assert "the best round and the last 3 rounds" in out
    assert any(line.split()[:2] == ["7", "4"] for line in out.splitlines())
    code, out, seen = _run(
        ["models", "show", "7", "--round", "best"], lambda r: httpx.Response(200, json=VERSION)
    )
    assert seen[0].url.path == "/api/v1/models/7/rounds/best"
    assert out.splitlines()[0] == "run 7 round 3 (best)"
    assert "ab" * 32 in out and "eval-accuracy" in out


def test_export_writes_the_file_and_reports_both_accuracies(tmp_path: Path) -> None:
    dest = tmp_path / "model.onnx"
    code, out, seen = _run(["models", "export", "7", "--format", "onnx", "-o", str(dest)], _onnx)
    assert code == 0 and seen[0].url.path == "/api/v1/models/7/rounds/best/onnx"
    assert dest.read_bytes() == ONNX_BYTES
    assert "torch accuracy 0.8712, ONNX Runtime accuracy 0.8711" in out
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    _, out, seen = _run(["--json", "models", "export", "7", "--round", "3", "-o", str(dest)], _onnx)
    assert seen[0].url.path == "/api/v1/models/7/rounds/3/onnx"
    result = json.loads(out)
    assert (result["round"], result["opset"], result["samples"]) == (3, 18, 10000)
    assert (result["torch_accuracy"], result["onnx_accuracy"]) == (0.8712, 0.8711)
    assert result["sha256"] == hashlib.sha256(ONNX_BYTES).hexdigest()


def test_download_checkpoint(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "run7.pt"
    code, out, seen = _run(["models", "download", "7", "--round", "latest", "-o", str(dest)], _onnx)
    assert code == 0 and seen[0].url.path == "/api/v1/models/7/rounds/latest/checkpoint"
    assert dest.read_bytes() == ONNX_BYTES and out.startswith(f"wrote {dest}: run 7 round 3")


def test_a_refused_export_is_one_line_and_leaves_the_old_file(tmp_path: Path) -> None:
    dest = tmp_path / "model.onnx"
    dest.write_bytes(b"old")

    def refuse(_r: httpx.Request) -> httpx.Response:
        return httpx.Response(
            409,
            json={
                "error": "onnx_validation_failed",
                "detail": "ONNX export rejected: ONNX Runtime accuracy 0.1000 vs torch accuracy "
                "0.8712 on 10000 fashion-mnist test examples differ by 77.12 percentage points",
                "torch_accuracy": 0.8712,
                "onnx_accuracy": 0.1,
            },
        )

    with pytest.raises(CliError) as info:
        _run(["models", "export", "7", "-o", str(dest)], refuse)
    assert info.value.code == EXIT_USAGE and "\n" not in str(info.value)
    assert str(info.value).startswith("409: ONNX export rejected") and "0.8712" in str(info.value)
    assert dest.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_a_damaged_download_is_not_kept(tmp_path: Path) -> None:
    dest = tmp_path / "model.onnx"
    with pytest.raises(CliError) as info:
        _run(["models", "export", "7", "-o", str(dest)], lambda r: _onnx(r, ONNX_BYTES[:-5]))
    assert info.value.code == EXIT_FAILURE and "damaged" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_dropped_connection_leaves_no_partial_file(tmp_path: Path) -> None:
    class Broken(httpx.SyncByteStream):
        def __iter__(self) -> Any:
            yield ONNX_BYTES[:100]
            raise httpx.ReadError("connection reset")

    dest = tmp_path / "model.onnx"
    with pytest.raises(CliError) as info:
        _run(
            ["models", "download", "7", "-o", str(dest)],
            lambda r: httpx.Response(200, stream=Broken()),
        )
    assert "cannot reach the coordinator" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_output_into_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(CliError) as info:
        _run(["models", "download", "7", "-o", str(tmp_path)], _onnx)
    assert info.value.code == EXIT_USAGE and "is a directory" in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["models", "show", "7", "--round", "zero"],
        ["models", "show", "seven"],
        ["models", "export", "7", "--format", "tflite", "-o", "x"],
        ["models", "export", "7"],  # -o is required
        ["models", "download", "7", "--round", "0", "-o", "x"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(argv)
    assert info.value.code == 2 and "error:" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["list", "show", "export", "download"])
def test_every_command_has_help_with_an_example(
    action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["models", action, "--help"])
    assert info.value.code == 0
    assert f"flctl models {action}" in capsys.readouterr().out.replace("--json ", "")
