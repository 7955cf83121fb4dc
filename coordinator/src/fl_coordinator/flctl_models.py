"""`flctl models ...`: list stored model versions, show one, download a checkpoint, export ONNX."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import httpx

from fl_coordinator.flctl_api import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Api, CliError
from fl_coordinator.flctl_output import dump_json, fmt, table
from fl_shared.atomic_write import atomic_write

_RAW = argparse.RawDescriptionHelpFormatter


def _round(text: str) -> str:
    if text in ("best", "latest") or (text.isascii() and text.isdigit() and int(text) >= 1):
        return text
    raise argparse.ArgumentTypeError(
        f"must be a round number (1, 2, ...), best or latest: {text!r}"
    )


def _run_id(text: str) -> int:
    if text.isascii() and text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"must be a run id (1, 2, ...): {text!r}")


def add_commands(sub: Any) -> None:
    """Register `models` and its actions on the top-level subparsers."""
    models = sub.add_parser(
        "models",
        help="stored model versions: list, show, download, export to ONNX",
        epilog="example: flctl models export 7 --round best --format onnx -o model.onnx",
        formatter_class=_RAW,
    ).add_subparsers(dest="action", required=True)
    ls = models.add_parser(
        "list",
        help="every stored version with its metrics",
        epilog="examples:\n  flctl models list\n  flctl --json models list --run 7",
        formatter_class=_RAW,
    )
    ls.add_argument("--run", type=_run_id, metavar="ID", help="only this run's versions")
    show = models.add_parser(
        "show",
        help="a run's versions, best and latest; or one version with --round",
        epilog="examples:\n  flctl models show 7\n  flctl models show 7 --round best",
        formatter_class=_RAW,
    )
    show.add_argument("run_id", type=_run_id, metavar="RUN")
    show.add_argument("--round", type=_round, help="a round number, best or latest")
    export = models.add_parser(
        "export",
        help="export a version to ONNX, validated by ONNX Runtime on the run's test set",
        epilog="example: flctl models export 7 --round best --format onnx -o model.onnx\n"
        "The coordinator refuses (409) an export whose ONNX Runtime accuracy is more than\n"
        "0.5 percentage points off torch's; FILE is then left untouched.",
        formatter_class=_RAW,
    )
    export.add_argument("run_id", type=_run_id, metavar="RUN")
    export.add_argument("--round", type=_round, default="best", help="N, best (default), latest")
    export.add_argument("--format", choices=["onnx"], default="onnx", help="onnx (default)")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    download = models.add_parser(
        "download",
        help="download a version's PyTorch checkpoint (.pt)",
        epilog="example: flctl models download 7 --round 3 -o run7-round3.pt",
        formatter_class=_RAW,
    )
    download.add_argument("run_id", type=_run_id, metavar="RUN")
    download.add_argument("--round", type=_round, default="best", help="N, best (default), latest")
    download.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")


def _tags(version: dict[str, Any]) -> str:
    return ",".join(t for t in ("best", "latest") if version.get(t))


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def print_versions(versions: list[dict[str, Any]], out: TextIO) -> None:
    rows = [
        (
            v["run_id"],
            v["round"],
            v["architecture"],
            v.get("dataset") or "-",
            fmt(v.get("eval_accuracy")),
            fmt(v.get("eval_loss")),
            _tags(v),
            "yes" if v.get("onnx") else "",
            v["sha256"][:12],
            v["created_at"][:19],
        )
        for v in versions
    ]
    headers = ("RUN", "ROUND", "MODEL", "DATASET", "ACCURACY", "LOSS", "TAGS", "ONNX", "SHA256")
    table(rows, (*headers, "CREATED"), out)


def print_run_models(run: dict[str, Any], out: TextIO) -> None:
    latest = run["latest"]
    best = run["best"]
    out.write(
        f"run {run['run_id']}: {latest['architecture']} on {latest.get('dataset') or '?'}, "
        + (
            f"best round {best['round']} (accuracy {fmt(best['eval_accuracy'])}), "
            if best
            else "no evaluated round, "
        )
        + f"latest round {latest['round']}\n"
        f"retention: the best round and the last {run['keep_last']} rounds\n"
    )
    print_versions(run["versions"], out)


def print_version(version: dict[str, Any], out: TextIO) -> None:
    tags = _tags(version)
    out.write(
        f"run {version['run_id']} round {version['round']}" + (f" ({tags})" if tags else "") + "\n"
    )
    lines = [
        ("model", f"{version['architecture']} ({version['num_classes']} classes)"),
        ("dataset", version.get("dataset") or "-"),
        ("created", version["created_at"]),
        ("checkpoint", f"{version['checkpoint']} ({_mb(version['size_bytes'])})"),
        ("sha256", version["sha256"]),
    ]
    lines += [(name, fmt(value)) for name, value in sorted(version["metrics"].items())]
    onnx = version.get("onnx")
    if onnx:
        lines.append(
            (
                "onnx",
                f"opset {onnx['opset']}, {_mb(onnx['size_bytes'])}, torch accuracy "
                f"{fmt(onnx['torch_accuracy'])}, ONNX Runtime {fmt(onnx['onnx_accuracy'])}",
            )
        )
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        out.write(f"  {name.ljust(width)}  {value}\n")


class _HashingSink:
    """Writes through to a file while hashing what passes."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> int:
        self.sha256.update(chunk)
        self.size += len(chunk)
        return self._fh.write(chunk)


def fetch_to_file(api: Api, path: str, dest: Path) -> tuple[httpx.Headers, int]:
    """Download ``path`` into ``dest`` atomically, checked against its X-Model-SHA256 header.

    On any failure ``dest`` is left as it was and no temporary file remains.
    """
    received: list[tuple[httpx.Headers, int]] = []

    def write(fh: BinaryIO) -> None:
        sink = _HashingSink(fh)
        headers = api.download(path, sink.write)
        expected = headers.get("x-model-sha256")
        if expected is not None and sink.sha256.hexdigest() != expected:
            raise CliError(
                f"download of {path} is damaged (sha256 {sink.sha256.hexdigest()[:12]}… != "
                f"{expected[:12]}… announced); {dest} was not written, try again",
                EXIT_FAILURE,
            )
        received.append((headers, sink.size))

    try:
        atomic_write(dest, write)
    except IsADirectoryError as exc:
        raise CliError(
            f"cannot write {dest}: it is a directory; pass a file name", EXIT_USAGE
        ) from exc
    except OSError as exc:
        raise CliError(f"cannot write {dest}: {exc.strerror or exc}", EXIT_USAGE) from exc
    return received[0]


def execute(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    """Carry out one `models` command."""
    if args.action == "list":
        path = "/api/v1/models" + (f"?run_id={args.run}" if args.run is not None else "")
        versions = api.call("GET", path)
        dump_json(versions, out) if args.json else print_versions(versions, out)
        return EXIT_OK
    if args.action == "show":
        if args.round is None:
            run = api.call("GET", f"/api/v1/models/{args.run_id}")
            dump_json(run, out) if args.json else print_run_models(run, out)
        else:
            version = api.call("GET", f"/api/v1/models/{args.run_id}/rounds/{args.round}")
            dump_json(version, out) if args.json else print_version(version, out)
        return EXIT_OK
    kind = args.format if args.action == "export" else "checkpoint"
    headers, size = fetch_to_file(
        api, f"/api/v1/models/{args.run_id}/rounds/{args.round}/{kind}", args.output
    )
    result: dict[str, Any] = {
        "path": str(args.output),
        "run_id": args.run_id,
        "round": int(headers.get("x-model-round", "0")),
        "format": kind if kind == "onnx" else "pytorch",
        "sha256": headers.get("x-model-sha256"),
        "size_bytes": size,
    }
    if kind == "onnx":
        result |= {
            "opset": int(headers.get("x-onnx-opset", "0")),
            "torch_accuracy": float(headers.get("x-torch-accuracy", "nan")),
            "onnx_accuracy": float(headers.get("x-onnx-accuracy", "nan")),
            "samples": int(headers.get("x-validation-samples", "0")),
            "checkpoint_sha256": headers.get("x-checkpoint-sha256"),
        }
    if args.json:
        dump_json(result, out)
        return EXIT_OK
    out.write(
        f"wrote {args.output}: run {args.run_id} round {result['round']}, {result['format']}, "
        f"{_mb(size)}, sha256 {result['sha256']}\n"
    )
    if kind == "onnx":
        out.write(
            f"validated on {result['samples']} test examples (opset {result['opset']}): "
            f"torch accuracy {result['torch_accuracy']:.4f}, "
            f"ONNX Runtime accuracy {result['onnx_accuracy']:.4f}\n"
        )
    return EXIT_OK
