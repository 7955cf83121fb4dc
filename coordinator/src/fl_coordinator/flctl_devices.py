"""`flctl devices ...`: list, inspect, label, drain and revoke the fleet's devices."""

from __future__ import annotations

import argparse
from typing import Any, TextIO
from urllib.parse import quote, urlencode

from fl_coordinator.flctl_api import EXIT_OK, EXIT_USAGE, Api, CliError
from fl_coordinator.flctl_output import dump_json, duration_seconds, fmt, table

STATES = ("online", "stale", "offline", "drained", "revoked")
WINDOWS = ("1h", "24h", "7d")


def add_commands(sub: Any) -> None:
    """Register `devices` and its actions on the top-level subparsers."""
    formatter = argparse.RawDescriptionHelpFormatter
    devices = sub.add_parser(
        "devices",
        help="enrolled devices",
        epilog="examples:\n  flctl devices list --status online\n"
        "  flctl devices drain dev-3f2a9c1b7d4e --reason 'disk swap'",
        formatter_class=formatter,
    ).add_subparsers(dest="action", required=True)
    listing = devices.add_parser(
        "list",
        help="devices with their status, filtered and one page at a time",
        formatter_class=formatter,
        epilog="examples:\n  flctl devices list --status online --has-gpu --label site=lab\n"
        "  flctl --json devices list --arch aarch64 --limit 1000 --offset 1000",
    )
    listing.add_argument("--status", choices=STATES, help="only devices in this state")
    listing.add_argument("--arch", help="CPU architecture from the capabilities, e.g. aarch64")
    listing.add_argument(
        "--has-gpu",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="only devices with (--no-has-gpu: without) an NVIDIA GPU or a Jetson",
    )
    listing.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only devices with this label (repeat to require several)",
    )
    listing.add_argument("--limit", type=int, default=100, help="page size, 1-1000 (100)")
    listing.add_argument("--offset", type=int, default=0, help="skip this many devices (0)")

    show = devices.add_parser(
        "show",
        help="one device: capabilities, last heartbeat, rounds it trained in",
        formatter_class=formatter,
        epilog="example:\n  flctl devices show dev-3f2a9c1b7d4e --history 24h",
    )
    show.add_argument("device_id")
    show.add_argument("--history", choices=WINDOWS, help="also print the heartbeat history")

    label = devices.add_parser(
        "label",
        help="set (KEY=VALUE) or remove (KEY-) labels of a device",
        formatter_class=formatter,
        epilog="examples:\n  flctl devices label dev-3f2a9c1b7d4e site=lab rack=4 old-\n"
        "  flctl devices label --replace dev-3f2a9c1b7d4e site=lab   (drops every other label)",
    )
    label.add_argument("device_id")
    label.add_argument("changes", nargs="*", metavar="KEY=VALUE|KEY-")
    label.add_argument("--replace", action="store_true", help="the given labels become all")

    token = devices.add_parser(
        "enroll-token",
        help="a one-time token for enrolling one new device (shown once)",
        formatter_class=formatter,
        epilog="example:\n  flctl devices enroll-token --expires 24h --label site=lab-2\n"
        "then on the device:\n  fl-edge-agent enroll --coordinator https://HOST:8080 "
        "--token <token> --ca-fingerprint <from fl-coordinator init>",
    )
    token.add_argument("--expires", default="24h", help="lifetime: 30m, 24h, 7d (default 24h)")
    token.add_argument("--name", default="", help="what the token is for")
    token.add_argument(
        "--label", action="append", default=[], help="key=value the device gets (repeat)"
    )
    for action, text, example in (
        ("drain", "keep a device out of new runs (it keeps heartbeating)", "--reason 'disk swap'"),
        ("undrain", "let a drained device take part in new runs again", ""),
        ("revoke", "refuse a device: its heartbeats and registrations get 403", "--reason stolen"),
        ("unrevoke", "accept a revoked device again", ""),
    ):
        parser = devices.add_parser(
            action,
            help=text,
            formatter_class=formatter,
            epilog=f"example:\n  flctl devices {action} dev-3f2a9c1b7d4e {example}".rstrip(),
        )
        parser.add_argument("device_id")
        if example:
            parser.add_argument("--reason", default="", help="shown in listings and refusals")


def _status(device: dict[str, Any]) -> str:
    # Coordinators before wire 1.2 send only `online`.
    return str(device.get("status") or ("online" if device.get("online") else "offline"))


def _arch_gpu(device: dict[str, Any]) -> tuple[str, str]:
    caps = device.get("capabilities") or {}
    arch = (caps.get("identity") or {}).get("arch") or "-"
    if not caps:
        return arch, "-"
    gpus = [g.get("name", "") for g in caps.get("nvidia_gpus") or []]
    jetson = caps.get("jetson")
    gpu = (jetson.get("model") or "jetson") if jetson else ", ".join(gpus) if gpus else "no"
    return arch, gpu


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def print_devices(devices: list[dict[str, Any]], out: TextIO) -> None:
    rows = []
    for d in devices:
        arch, gpu = _arch_gpu(d)
        rows.append(
            (
                d["device_id"],
                d["name"],
                _status(d),
                d["supernode_state"],
                arch,
                gpu,
                _labels(d.get("labels") or {}),
                d["agent_version"] or "-",
                (d["last_heartbeat_at"] or "-")[:19],
            )
        )
    headers = (
        "DEVICE",
        "NAME",
        "STATUS",
        "SUPERNODE",
        "ARCH",
        "GPU",
        "LABELS",
        "AGENT",
        "LAST HEARTBEAT",
    )
    table(rows, headers, out)


def print_device(device: dict[str, Any], out: TextIO) -> None:
    arch, gpu = _arch_gpu(device)
    status = _status(device)
    if device.get("status_reason"):
        status += f" ({device['status_reason']})"
    last = device.get("last_status") or {}
    fields = [
        ("device", device["device_id"]),
        ("name", device["name"]),
        ("status", status),
        ("hostname", device["hostname"] or "-"),
        ("platform", device["platform"] or "-"),
        ("agent", device["agent_version"] or "-"),
        ("arch / gpu", f"{arch} / {gpu}"),
        ("labels", _labels(device.get("labels") or {})),
        ("registered", device["registered_at"][:19]),
        ("last heartbeat", (device["last_heartbeat_at"] or "-")[:19]),
        ("supernode", device["supernode_state"]),
        ("activity", last.get("activity", "-")),
        (
            "load",
            f"cpu {fmt(last.get('cpu_percent'), 1)} %  memory "
            f"{fmt(last.get('memory_percent'), 1)} %  max temp {fmt(last.get('max_temp_c'), 1)} C",
        ),
    ]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        out.write(f"{key.ljust(width)}  {value}\n")
    history = device.get("heartbeat_history") or []
    if history:
        out.write("\nheartbeat history\n")
        table(
            [
                (
                    h["at"][:19],
                    "raw" if not h["resolution_s"] else f"{h['resolution_s'] // 60} min",
                    h["samples"],
                    fmt(h["cpu_percent"], 1),
                    fmt(h["memory_percent"], 1),
                    fmt(h["max_temp_c"], 1),
                    h["supernode_state"],
                    h["activity"],
                )
                for h in history
            ],
            ("AT", "RESOLUTION", "BEATS", "CPU %", "MEM %", "MAX C", "SUPERNODE", "ACTIVITY"),
            out,
        )
    rounds = device.get("participation") or []
    out.write("\nrounds trained\n" if rounds else "\nrounds trained: none\n")
    if rounds:
        table(
            [
                (
                    r["run_id"],
                    r["round"],
                    r["num_examples"],
                    fmt(r["train_loss"]),
                    fmt(r["train_seconds"], 1),
                )
                for r in rounds
            ],
            ("RUN", "ROUND", "EXAMPLES", "LOSS", "SECONDS"),
            out,
        )


def _label_changes(changes: list[str], replace: bool) -> dict[str, str | None]:
    parsed: dict[str, str | None] = {}
    for change in changes:
        key, sep, value = change.partition("=")
        if sep and key:
            parsed[key] = value
        elif change.endswith("-") and len(change) > 1 and not replace:
            parsed[change[:-1]] = None
        else:
            raise CliError(
                f"label change {change!r} is neither KEY=VALUE nor KEY- (remove): e.g. "
                "`flctl devices label DEVICE site=lab old-`",
                EXIT_USAGE,
            )
    if not parsed and not replace:
        raise CliError("name at least one label change: KEY=VALUE or KEY-", EXIT_USAGE)
    return parsed


def _list(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    for item in args.label:
        if "=" not in item or item.startswith("="):
            raise CliError(f"--label {item!r} is not KEY=VALUE, e.g. --label site=lab", EXIT_USAGE)
    query: list[tuple[str, str]] = [
        ("limit", str(args.limit)),
        ("offset", str(args.offset)),
        ("envelope", "true"),
    ]
    if args.status:
        query.append(("status", args.status))
    if args.arch:
        query.append(("arch", args.arch))
    if args.has_gpu is not None:
        query.append(("has_gpu", "true" if args.has_gpu else "false"))
    query += [("label", item) for item in args.label]
    answer = api.call("GET", f"/api/v1/devices?{urlencode(query)}")
    # A coordinator before wire 1.2 answers a plain list of every device.
    page = answer if isinstance(answer, dict) else {"items": answer, "total": len(answer)}
    if args.json:
        dump_json(page["items"], out)
        return EXIT_OK
    print_devices(page["items"], out)
    shown, total = len(page["items"]), page["total"]
    if shown < total:
        first = args.offset + 1 if shown else args.offset
        more = f"; next page: --offset {page['next_offset']}" if page.get("next_offset") else ""
        out.write(f"{first}-{args.offset + shown} of {total} devices{more}\n")
    return EXIT_OK


def _enroll_token(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    labels = {k: v for k, v in (_label_changes(args.label, True) or {}).items() if v is not None}
    body = {"name": args.name, "expires_in_s": duration_seconds(args.expires), "labels": labels}
    issued = api.call("POST", "/api/v1/enroll-tokens", body)
    if args.json:
        dump_json(issued, out)
    else:
        out.write(
            f"{issued['token']}\n(one device, once, until {issued['expires_at']}; "
            "it is shown only now)\n"
        )
    return EXIT_OK


def execute(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    """Carry out one `devices` command."""
    if args.action == "list":
        return _list(args, api, out)
    if args.action == "enroll-token":
        return _enroll_token(args, api, out)
    path = f"/api/v1/devices/{quote(args.device_id, safe='')}"
    if args.action == "show":
        result = api.call("GET", path + (f"?history={args.history}" if args.history else ""))
        dump_json(result, out) if args.json else print_device(result, out)
        return EXIT_OK
    if args.action == "label":
        changes = _label_changes(args.changes, args.replace)
        if args.replace:
            result = api.call("PUT", f"{path}/labels", {"labels": changes})
        else:
            result = api.call("PATCH", f"{path}/labels", {"labels": changes})
    else:
        body = {"reason": args.reason} if getattr(args, "reason", "") else None
        result = api.call("POST", f"{path}/{args.action}", body)
    if args.json:
        dump_json(result, out)
    else:
        reason = f" ({result['status_reason']})" if result.get("status_reason") else ""
        out.write(
            f"{result['device_id']}: {_status(result)}{reason}, "
            f"labels {_labels(result.get('labels') or {})}\n"
        )
    return EXIT_OK
