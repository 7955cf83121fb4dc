"""`flctl tokens ...`: create admin and read-only API tokens, list and revoke tokens."""

from __future__ import annotations

import argparse
import math
from typing import Any, TextIO
from urllib.parse import quote, urlencode

from fl_coordinator.flctl_api import EXIT_OK, Api
from fl_coordinator.flctl_output import dump_json, duration_seconds, table

CREATED_KINDS = ("admin", "read")
KINDS = ("admin", "read", "enroll", "device")


def add_commands(sub: Any) -> None:
    """Register `tokens` and its actions on the top-level subparsers."""
    formatter = argparse.RawDescriptionHelpFormatter
    tokens = sub.add_parser(
        "tokens",
        help="admin and read-only API tokens (admin)",
        epilog="examples:\n  flctl tokens create --kind read --name grafana --expires 90d\n"
        "  flctl tokens list --kind admin\n  flctl tokens revoke tok-3f2a9c1b7d4e",
        formatter_class=formatter,
    ).add_subparsers(dest="action", required=True)
    create = tokens.add_parser(
        "create",
        help="a new admin or read-only token (its secret is shown once)",
        formatter_class=formatter,
        epilog="examples:\n  flctl tokens create --kind read --name grafana --expires 90d\n"
        "  flctl tokens create --kind admin --name alice\n"
        "  flctl --json tokens create --kind read --name ci | jq -r .token\n"
        "enrollment tokens come from `flctl devices enroll-token`",
    )
    create.add_argument(
        "--kind",
        required=True,
        choices=CREATED_KINDS,
        help="admin: everything; read: every GET but this listing",
    )
    create.add_argument("--name", required=True, help="who or what it is for (1-100 characters)")
    create.add_argument(
        "--expires", default=None, help="lifetime: 30m, 24h, 90d (default: until revoked)"
    )
    listing = tokens.add_parser(
        "list",
        help="every token with its status, oldest first (never a secret)",
        formatter_class=formatter,
        epilog="examples:\n  flctl tokens list --kind read\n"
        "  flctl --json tokens list | jq -r '.[] | select(.status == \"active\") | .token_id'",
    )
    listing.add_argument("--kind", choices=KINDS, help="only tokens of this kind")
    revoke = tokens.add_parser(
        "revoke",
        help="revoke a token: it gets 401 from now on (not the last active admin token)",
        formatter_class=formatter,
        epilog="example:\n  flctl tokens revoke tok-3f2a9c1b7d4e",
    )
    revoke.add_argument("token_id", help="the id from `flctl tokens list` (tok-...)")


def print_tokens(tokens: list[dict[str, Any]], out: TextIO) -> None:
    table(
        [
            (
                t["token_id"],
                t["kind"],
                t["name"] or "-",
                t["status"],
                t.get("device_id") or "-",
                t["created_at"][:19],
                (t.get("expires_at") or "-")[:19],
            )
            for t in tokens
        ],
        ("TOKEN", "KIND", "NAME", "STATUS", "DEVICE", "CREATED", "EXPIRES"),
        out,
    )


def _create(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    body: dict[str, Any] = {"kind": args.kind, "name": args.name}
    if args.expires is not None:
        # The API counts whole seconds: a part of one rounds up, never down to nothing.
        body["expires_in_s"] = math.ceil(duration_seconds(args.expires))
    issued = api.call("POST", "/api/v1/tokens", body)
    if args.json:
        dump_json(issued, out)
        return EXIT_OK
    until = f"until {issued['expires_at']}" if issued.get("expires_at") else "until revoked"
    out.write(
        f"{issued['token']}\n({issued['kind']} token {issued['token_id']}, {until}; it is shown "
        "only now: store it safely)\n"
    )
    return EXIT_OK


def execute(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    """Carry out one `tokens` command."""
    if args.action == "create":
        return _create(args, api, out)
    if args.action == "list":
        query = f"?{urlencode({'kind': args.kind})}" if args.kind else ""
        items = api.call("GET", f"/api/v1/tokens{query}")["items"]
        dump_json(items, out) if args.json else print_tokens(items, out)
        return EXIT_OK
    result = api.call("POST", f"/api/v1/tokens/{quote(args.token_id, safe='')}/revoke")
    if args.json:
        dump_json(result, out)
    else:
        out.write(
            f"{result['token_id']}: {result['status']} ({result['kind']}, {result['name']})\n"
        )
    return EXIT_OK
