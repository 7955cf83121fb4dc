"""Run inside a device's network namespace: what of the coordinator can a device reach?

Usage: python fleet_exposure_probe.py HOST API_PORT FLEET_PORT SUPERLINK_PORT CA_FILE
Prints one JSON object: status codes per URL, or the connection error.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys

import httpx


def _status(client: httpx.Client, method: str, url: str) -> int | str:
    try:
        return client.request(method, url, content=b"").status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


def _tcp(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=3):
            return "open"
    except OSError as exc:
        return type(exc).__name__


def main() -> None:
    host, api, fleet, superlink, ca = sys.argv[1:6]
    verify = ssl.create_default_context(cafile=ca)
    with httpx.Client(verify=verify, timeout=5) as client:
        result = {
            "api_health": _status(client, "GET", f"https://{host}:{api}/healthz"),
            "fleet_health": _status(client, "GET", f"https://{host}:{fleet}/health"),
            "fleet_control": _status(
                client, "POST", f"https://{host}:{fleet}/v1/control/list-runs"
            ),
            "fleet_register": _status(
                client, "POST", f"https://{host}:{fleet}/v1/control/register-node"
            ),
            "fleet_runtime": _status(client, "POST", f"https://{host}:{fleet}/v1/runtime/pull-app"),
            "superlink_port": _tcp(host, int(superlink)),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
