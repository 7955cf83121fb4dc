"""`flctl`: the admin CLI over the REST API of the coordinator: tables, or --json for scripts.

Each command group lives in its own module (``flctl_devices``, ``flctl_runs``, ...) with
``add_commands(subparsers)`` and ``execute(args, api, out)``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from fl_coordinator import flctl_devices, flctl_models, flctl_runs, flctl_tokens
from fl_coordinator.flctl_api import EXIT_UNREACHABLE, EXIT_USAGE, Api, CliError
from fl_coordinator.flctl_config import resolve

__all__ = ["EXIT_UNREACHABLE", "EXIT_USAGE", "Api", "CliError", "execute", "main"]

GROUPS = {
    "devices": flctl_devices,
    "runs": flctl_runs,
    "models": flctl_models,
    "tokens": flctl_tokens,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flctl",
        description=__doc__.split("\n\n")[0],
        epilog="examples:\n  flctl --url http://coordinator:8080 devices list\n"
        "  flctl --json runs list | jq '.[0].status'\n"
        "  flctl runs start --dataset digits --follow\n\n"
        "each command has its own --help with examples, e.g. `flctl runs start --help`",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url",
        default=None,
        help="coordinator REST API (else env FLCTL_URL, else `url` in the config file, "
        "else http://127.0.0.1:8080)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="API token, sent as a bearer token (else env FLCTL_TOKEN, else `token` in the "
        "config file: $FLCTL_CONFIG or ~/.config/flctl/config.toml)",
    )
    parser.add_argument(
        "--ca-file",
        default=None,
        help="the coordinator's CA certificate for https URLs (else env FLCTL_CA_FILE, else "
        "`ca_file` in the config file, else the system's trust store); `fl-coordinator init` "
        "made it: <state dir>/pki/ca.crt",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    sub = parser.add_subparsers(dest="resource", required=True)
    for group in GROUPS.values():
        group.add_commands(sub)
    return parser


def execute(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    """Carry out one parsed command."""
    return GROUPS[args.resource].execute(args, api, out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `flctl`."""
    args = _parser().parse_args(argv)
    try:
        connection = resolve(args.url, args.token, args.ca_file)
        api = Api(connection.url, token=connection.token, ca_file=connection.ca_file)
        return execute(args, api, sys.stdout)
    except CliError as exc:
        print(f"flctl: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
