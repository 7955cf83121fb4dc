"""The two servers bench/heartbeat_ingest.py loads: the bare baseline and the real coordinator API.

``baseline``: a minimal FastAPI app, one SQLite upsert per request, no auth, no middleware.
``coordinator``: fl_coordinator.api_app.create_app on a real Registry (SQLite or PostgreSQL),
with 10,000 devices enrolled in bulk first; served by uvicorn exactly as ``fl-coordinator serve``
configures it. Runs until SIGTERM. Usage:

    python bench/ingest_server.py baseline --port P --database /tmp/x.db
    python bench/ingest_server.py coordinator --port P --database URL --devices N --state-dir D
"""

from __future__ import annotations

import argparse
import signal
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

DEVICE_ID = "bench-{:05d}"


def baseline_app(path: Path) -> FastAPI:
    """The bare baseline: parse JSON, one upsert in autocommit mode, answer."""
    local = threading.local()

    def connection() -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=5000")
            local.conn = conn
        return conn

    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS beats (device_id TEXT PRIMARY KEY, at TEXT, "
            "cpu_percent REAL, memory_percent REAL, activity TEXT)"
        )
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/v1/devices/{device_id}/heartbeat")
    def heartbeat(device_id: str, body: dict[str, Any]) -> dict[str, str]:
        now = datetime.now(UTC).isoformat()
        connection().execute(
            "INSERT INTO beats VALUES (?, ?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
            "at=excluded.at, cpu_percent=excluded.cpu_percent, "
            "memory_percent=excluded.memory_percent, activity=excluded.activity",
            (
                device_id,
                now,
                body.get("cpu_percent"),
                body.get("memory_percent"),
                body.get("activity"),
            ),
        )
        return {"device_id": device_id, "server_time": now}

    return app


def enroll_in_bulk(url: str, devices: int) -> None:
    """Create ``devices`` enrolled devices with capabilities, in one transaction."""
    from sqlalchemy import create_engine, insert

    from fl_coordinator.registry_schema import DeviceLabelRow, DeviceRow, DeviceStatusRow
    from fl_shared.capabilities import Capabilities, CpuInfo, Identity, MemoryInfo

    caps = Capabilities(
        identity=Identity(arch="x86_64", os_pretty_name="Debian GNU/Linux 12 (bookworm)"),
        cpu=CpuInfo(model="Intel(R) Xeon(R) CPU", cores=8, max_freq_mhz=3000.0),
        memory=MemoryInfo(total_bytes=16 * 1024**3, available_bytes=12 * 1024**3),
    ).model_dump(mode="json")
    now = datetime.now(UTC)
    engine = create_engine(url)
    sites = ("lab-1", "lab-2", "field")
    with engine.begin() as conn:
        ids = [DEVICE_ID.format(n) for n in range(devices)]
        conn.execute(
            insert(DeviceRow),
            [
                {
                    "device_id": device_id,
                    "name": device_id,
                    "hostname": device_id,
                    "platform": "Linux-6.1-x86_64",
                    "agent_version": "0.4.0",
                    "labels": {"site": sites[n % 3]},
                    "registered_at": now,
                    "supernode_state": "running",
                    "supernode_restarts": 0,
                    "arch": "x86_64",
                    "has_gpu": False,
                    "status_reason": "",
                }
                for n, device_id in enumerate(ids)
            ],
        )
        conn.execute(
            insert(DeviceLabelRow),
            [{"device_id": d, "key": "site", "value": sites[n % 3]} for n, d in enumerate(ids)],
        )
        conn.execute(
            insert(DeviceStatusRow),
            [{"device_id": d, "capabilities": caps, "capabilities_at": now} for d in ids],
        )
    engine.dispose()


def issue_credentials(url: str, devices: int, out: Path) -> None:
    """A device credential per device, stored hashed as the enrollment would; secrets to ``out``.

    In bulk (one transaction) rather than 10,000 enrollments: the benchmark measures heartbeats.
    """
    import secrets

    from sqlalchemy import create_engine, insert

    from fl_coordinator.credentials import PREFIXES, secret_hash
    from fl_coordinator.registry_schema import ApiTokenRow

    now = datetime.now(UTC)
    tokens = [PREFIXES["device"] + secrets.token_urlsafe(32) for _ in range(devices)]
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(ApiTokenRow),
            [
                {
                    "token_id": f"tok-bench{n:07d}",
                    "kind": "device",
                    "name": "bench",
                    "secret_hash": secret_hash(token),
                    "device_id": DEVICE_ID.format(n),
                    "labels": {},
                    "created_at": now,
                }
                for n, token in enumerate(tokens)
            ],
        )
    engine.dispose()
    out.write_text("\n".join(tokens) + "\n")


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("baseline", "coordinator"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument(
        "--credentials-out",
        type=Path,
        help="coordinator: require device credentials and write them here (one per line)",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    if args.kind == "baseline":
        app = baseline_app(Path(args.database))
        registry = None
    else:
        from fl_coordinator.api_app import create_app
        from fl_coordinator.credentials import CredentialStore
        from fl_coordinator.flower_control import FlowerControl
        from fl_coordinator.registry import Registry
        from fl_coordinator.run_service import RunService
        from fl_coordinator.settings import CoordinatorSettings
        from fl_coordinator.telemetry import configure_tracing

        configure_tracing()
        # With credentials, the REST API checks them as in production (plain HTTP here: the
        # benchmark measures the application, not TLS); without, the development mode.
        settings = CoordinatorSettings(
            state_dir=args.state_dir, insecure=args.credentials_out is None
        )
        registry = Registry(args.database)
        registry.migrate()
        enroll_in_bulk(args.database, args.devices)
        if args.credentials_out is not None:
            issue_credentials(args.database, args.devices, args.credentials_out)
            # A read-only token for the bench's device listings.
            reader = CredentialStore(registry).create("read", "bench").secret
            args.credentials_out.with_suffix(".reader").write_text(reader)
        # Nothing listens there: the benchmark starts no runs.
        runs = RunService(registry, FlowerControl("127.0.0.1:9", insecure=True), settings)
        app = create_app(registry, runs, settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=args.port, log_config=None, access_log=False
    )
    if registry is not None:
        from fl_coordinator.serving_tuning import tune_for_serving

        tune_for_serving()  # as `fl-coordinator serve` does
    try:
        uvicorn.Server(config).run()
    finally:
        if registry is not None:
            registry.close()


if __name__ == "__main__":
    main()
