"""Heartbeat ingest: requests/s and latency of the real heartbeat endpoint vs a bare baseline.

Each target is a separate server process (bench/ingest_server.py) loaded by ``wrk`` (another
process; Debian package ``wrk``) with a Lua script: every request is one heartbeat of one of
``--devices`` (10,000) devices picked at random, ``--connections`` at once, for ``--seconds``
after a warm-up. Targets, in one run:

- ``baseline``: a minimal FastAPI app doing one SQLite upsert per request (no auth, no
  middleware, no history);
- ``coordinator-sqlite``: ``fl_coordinator.api_app.create_app`` on a real SQLite registry, with
  device authentication (every beat carries its device's own credential, checked as in
  production; ``--no-auth``: the development mode), history retention and OpenTelemetry on
  (spans exported by OTLP/HTTP to a sink in this process), served by uvicorn as
  ``fl-coordinator serve`` serves it (plain HTTP: the application is measured, not TLS);
- ``coordinator-postgresql``: the same on a private PostgreSQL cluster (fsync on).

Two loads per target:

- **saturation**: ``--connections`` (50) connections send back to back: the most requests/s;
- **fleet pace**: like devices do, each of ``--paced-connections`` (200) connections waits a
  fixed pause after each answer, set so that the offered rate is the *baseline's* saturation
  throughput: the latency every target gives at the load the bare baseline can just carry
  (the goal: p99 <= 20 ms at 1.0x the baseline's throughput).

Afterwards, on the quiet coordinator: ``GET /api/v1/devices`` page latency (100 per page, plain
and filtered), and a check that every answered beat was written (history rows vs 2xx answers).

A benchmark never asserts: it prints numbers and writes JSON (default
``bench/results/heartbeat_ingest.json``).

Usage: .venv/bin/python bench/heartbeat_ingest.py [--devices N] [--connections C]
       [--seconds S] [--warmup S] [--no-postgres] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from bench_machine import machine_info

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))  # tests.postgres_cluster

from tests.postgres_cluster import PostgresUnavailable, private_postgres  # noqa: E402

DEFAULT_OUT = BENCH_DIR / "results" / "heartbeat_ingest.json"
LUA = """
math.randomseed(%(seed)d)
local devices = %(devices)d
local credentials = {}
local path = "%(credentials)s"
if path ~= "" then
  for line in io.lines(path) do credentials[#credentials + 1] = line end
end
local pause_ms = %(pause_ms)f
if pause_ms > 0 then
  delay = function() return pause_ms end
end
request = function()
  local n = math.random(0, devices - 1)
  local id = string.format("bench-%%05d", n)
  local headers = {["Content-Type"] = "application/json"}
  if path ~= "" then headers["Authorization"] = "Bearer " .. credentials[n + 1] end
  local body = '{"schema_version":"1.2","device_id":"' .. id .. '",' ..
    '"supernode_state":"running","cpu_percent":' .. math.random(0, 100) .. ',' ..
    '"memory_percent":42.5,"max_temp_c":51.0,"activity":"idle","uptime_s":1234.5,' ..
    '"agent_version":"0.4.0","clientapp_runtime":"warm","runtime_state":"running"}'
  return wrk.format("POST", "/api/v1/devices/" .. id .. "/heartbeat", headers, body)
end
"""


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that accepts and counts span exports."""

    exports = 0
    bytes = 0

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        type(self).exports += 1
        type(self).bytes += length
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def otlp_sink() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", _free_port()), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def server(
    kind: str,
    database: str,
    devices: int,
    state_dir: Path,
    env: dict[str, str],
    credentials: Path | None,
) -> Iterator[str]:
    port = _free_port()
    argv = [sys.executable, str(BENCH_DIR / "ingest_server.py"), kind, "--port", str(port)]
    argv += ["--database", database, "--devices", str(devices), "--state-dir", str(state_dir)]
    if credentials is not None:
        argv += ["--credentials-out", str(credentials)]
    log = (state_dir / f"{kind}.log").open("w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} server exited ({proc.returncode}); see {log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} server did not answer within 180 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url: str, script: Path, connections: int, seconds: float) -> dict[str, Any]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "-s", str(script)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    latency = {
        f"p{m.group(1)}_ms": _ms(m.group(2))
        for m in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.MULTILINE)
    }
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    refused = int(non_2xx.group(1)) if non_2xx else 0
    return {
        "requests": requests,
        "requests_per_s": rate,
        # Answers that are not 2xx (503 when the database falls behind) are not throughput.
        "ok_per_s": round(rate * (requests - refused) / max(requests, 1), 1),
        **latency,
        "non_2xx": refused,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


def page_latency(url: str, devices: int, token: str | None, samples: int = 30) -> dict[str, Any]:
    """Latency of device list pages (100 per page) on a quiet server, in ms."""
    rng = random.Random(7)
    results: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, timeout=30, headers=headers) as client:
        for name, params in {
            "all": {},
            "online": {"status": "online"},
            "label": {"label": "site=lab-2"},
        }.items():
            times = []
            total = 0
            for _ in range(samples):
                offset = rng.randrange(0, max(devices - 100, 1) // 100) * 100
                started = time.perf_counter()
                answer = client.get(
                    "/api/v1/devices", params={**params, "limit": 100, "offset": offset}
                )
                times.append((time.perf_counter() - started) * 1000)
                answer.raise_for_status()
                total = int(answer.headers["X-Total-Count"])
            times.sort()
            results[name] = {
                "median_ms": round(statistics.median(times), 1),
                "p95_ms": round(times[int(len(times) * 0.95) - 1], 1),
                "max_ms": round(times[-1], 1),
                "total": total,
            }
    return results


def history_rows(database: str) -> int:
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM device_heartbeats")).scalar_one())
    finally:
        engine.dispose()


def lua(args: argparse.Namespace, seed: int, pause_ms: float, credentials: Path | None) -> str:
    """The wrk script: random devices, each beat with its device's credential (if any)."""
    return LUA % {
        "seed": seed,
        "devices": args.devices,
        "pause_ms": pause_ms,
        "credentials": str(credentials or ""),
    }


def paced_load(
    url: str, work: Path, args: argparse.Namespace, rate: float, credentials: Path | None
) -> dict[str, Any]:
    """Offer ``rate`` beats/s from paced connections (the pause is calibrated on the server)."""
    script = work / "paced.lua"
    conns = args.paced_connections
    pause = conns / rate * 1000.0
    script.write_text(lua(args, 7, pause, credentials))
    calibrated_2xx = 0
    for _ in range(2):  # twice: the first also warms the server to this pattern
        calibration = wrk(url, script, conns, 3)
        calibrated_2xx += calibration["requests"] - calibration["non_2xx"]
        # Each connection sends every pause + latency: take the mean latency out of the pause.
        latency_ms = conns / calibration["requests_per_s"] * 1000.0 - pause
        pause = max(conns / rate * 1000.0 - latency_ms, 0.0)
        script.write_text(lua(args, 11, pause, credentials))
    load = wrk(url, script, conns, args.seconds)
    return {
        **load,
        "offered_per_s": round(rate, 1),
        "pause_ms": round(pause, 2),
        "connections": conns,
        "calibration_2xx": calibrated_2xx,
    }


def run_target(
    kind: str,
    database: str,
    args: argparse.Namespace,
    work: Path,
    sink: str | None,
    paced_rate: float | None,
) -> dict[str, Any]:
    label = kind if kind == "baseline" else f"coordinator-{database.split(':')[0].split('+')[0]}"
    print(f"{label}: starting ...", flush=True)
    script = work / "heartbeat.lua"
    credentials = None if kind == "baseline" or args.no_auth else work / f"{label}.credentials"
    script.write_text(lua(args, 42, 0.0, credentials))
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink} if sink else {}
    result: dict[str, Any] = {"target": label, "device_auth": credentials is not None}
    with server(kind, database, args.devices, work, env, credentials) as url:
        warm = wrk(url, script, args.connections, args.warmup)
        load = wrk(url, script, args.connections, args.seconds)
        result.update(load)
        answered = warm["requests"] - warm["non_2xx"] + load["requests"] - load["non_2xx"]
        if paced_rate:
            paced = paced_load(url, work, args, paced_rate, credentials)
            result["paced"] = paced
            answered += paced["requests"] - paced["non_2xx"] + paced["calibration_2xx"]
            print(
                f"{label}: paced at {paced['offered_per_s']:.0f}/s -> {paced['requests_per_s']:.0f}"
                f" req/s, p50 {paced.get('p50_ms')} ms, p99 {paced.get('p99_ms')} ms",
                flush=True,
            )
        result["answered_2xx_with_warmup"] = answered
        print(
            f"{label}: {load['ok_per_s']:.0f} 2xx/s, p50 {load.get('p50_ms')} ms, "
            f"p99 {load.get('p99_ms')} ms, non-2xx {load['non_2xx']}",
            flush=True,
        )
        if kind == "coordinator":
            time.sleep(1.0)
            reader = credentials.with_suffix(".reader").read_text() if credentials else None
            result["devices_list"] = page_latency(url, args.devices, reader)
            print(f"{label}: devices list {result['devices_list']}", flush=True)
    if kind == "coordinator":
        url = database if "://" in database else f"sqlite:///{database}"
        result["history_rows_written"] = history_rows(url)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--paced-connections", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--no-auth", action="store_true", help="coordinator in development mode (no credentials)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    started = datetime.now(UTC)
    targets: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fl-ingest-") as tmp, otlp_sink() as sink:
        work = Path(tmp)
        base_db = str(work / "baseline.db")
        base = run_target("baseline", base_db, args, work, None, None)
        rate = base["ok_per_s"]
        # The baseline again, now paced at its own saturation rate (a fresh server and table).
        base_paced = run_target("baseline", base_db + ".2", args, work, None, rate)
        base["paced"] = base_paced["paced"]
        targets.append(base)
        sqlite_url = f"sqlite:///{work / 'registry.db'}"
        targets.append(run_target("coordinator", sqlite_url, args, work, sink, rate))
        if not args.no_postgres:
            try:
                with private_postgres(durable=True) as pg:
                    pg_url = pg.url("postgres")
                    targets.append(run_target("coordinator", pg_url, args, work, sink, rate))
            except PostgresUnavailable as exc:
                print(f"PostgreSQL not measured: {exc}", flush=True)
    base = targets[0]
    for target in targets:
        target["throughput_vs_baseline"] = round(target["ok_per_s"] / base["ok_per_s"], 2)
        if "history_rows_written" in target:
            # Every 2xx answer is a history row, written at shutdown at the latest (a request
            # wrk abandoned at the end of a run may add a row it did not count).
            target["unwritten_beats"] = max(
                target["answered_2xx_with_warmup"] - target["history_rows_written"], 0
            )
    record = {
        "benchmark": "heartbeat_ingest",
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "devices": args.devices,
        "connections": args.connections,
        "seconds": args.seconds,
        "otlp_exports_received": _Sink.exports,
        "targets": targets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print()
    print(
        f"{'target':24} {'2xx/s':>7} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7}"
        f" | {'paced/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>8}"
    )
    for t in targets:
        paced = t.get("paced", {})
        print(
            f"{t['target']:24} {t['ok_per_s']:7.0f} {t['throughput_vs_baseline']:6.2f} "
            f"{t.get('p50_ms', 0):7.2f} {t.get('p99_ms', 0):7.2f} | "
            f"{paced.get('ok_per_s', 0):8.0f} {paced.get('p50_ms', 0):7.2f} "
            f"{paced.get('p99_ms', 0):7.2f} {t['non_2xx'] + paced.get('non_2xx', 0):8d}"
        )
    print(f"OTLP exports received: {_Sink.exports}; results: {args.out}")


if __name__ == "__main__":
    main()
