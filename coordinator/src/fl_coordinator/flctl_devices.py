"""`flctl devices ...`: the fleet's devices."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from fl_coordinator.flctl_api import EXIT_OK, Api
from fl_coordinator.flctl_output import dump_json, table


def add_commands(sub: Any) -> None:
    """Register `devices` and its actions on the top-level subparsers."""
    devices = sub.add_parser("devices", help="enrolled devices").add_subparsers(
        dest="action", required=True
    )
    devices.add_parser("list", help="every device with its liveness")


def print_devices(devices: list[dict[str, Any]], out: TextIO) -> None:
    rows = [
        (
            d["device_id"],
            d["name"],
            "online" if d["online"] else "offline",
            d["supernode_state"],
            d["platform"],
            d["agent_version"],
            (d["last_heartbeat_at"] or "-")[:19],
        )
        for d in devices
    ]
    headers = ("DEVICE", "NAME", "STATUS", "SUPERNODE", "PLATFORM", "AGENT", "LAST HEARTBEAT")
    table(rows, headers, out)


def execute(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    """Carry out one `devices` command."""
    devices = api.call("GET", "/api/v1/devices")
    dump_json(devices, out) if args.json else print_devices(devices, out)
    return EXIT_OK
