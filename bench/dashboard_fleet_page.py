"""Dashboard fleet page: time until it is interactive in headless Chromium, 10,000 devices vs 100.

A real ``fl-coordinator serve`` (development mode: plain HTTP, no login, so that the page and
the API are measured and not the login form) on a SQLite registry seeded in bulk with
``--devices`` devices (a mix of online, stale, offline and drained ones, each with
capabilities, a speed score and a last heartbeat), and, in the same run, the same with
``--baseline-devices`` (100). For each, ``--repeats`` fresh browser contexts (cold cache) open
``/`` and measure, from navigation start:

- ``interactive_ms``: the device table shows its first page (50 rows) and the state counts are
  filled: the page answers input from then on;
- then ``sort_ms``: a click on the speed column until the first row changes (a sorted page
  from the server), and ``search_ms``: typing a name until the table shows the one match.

The goal (issue #7): ``interactive_ms`` <= 2,000 ms with 10,000 devices. The ratio to the
100-device baseline shows how much of it the fleet's size costs.

A benchmark never asserts: it prints numbers and writes JSON (default
``bench/results/dashboard_fleet_page.json``).

Usage: .venv/bin/python bench/dashboard_fleet_page.py [--devices N] [--baseline-devices N]
       [--repeats R] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_machine import machine_info  # noqa: E402
from bench.ingest_server import DEVICE_ID, enroll_in_bulk  # noqa: E402

from fl_shared.managed_process import ManagedProcess  # noqa: E402
from fl_shared.ports import free_port  # noqa: E402

ROWS = 50  # the dashboard's page size


def seed(url: str, devices: int) -> None:
    """Enroll ``devices`` in bulk, then give them varied speeds, heartbeats and states."""
    from sqlalchemy import create_engine, update

    from fl_coordinator.registry import Registry
    from fl_coordinator.registry_schema import DeviceRow, DeviceStatusRow

    registry = Registry(url)
    registry.migrate()
    registry.close()
    enroll_in_bulk(url, devices)
    now = datetime.now(UTC)
    engine = create_engine(url)
    with engine.begin() as conn:
        for n in range(devices):
            device_id = DEVICE_ID.format(n)
            speed = 50.0 + ((n + 1) * 7919) % 2000  # spread; the first enrolled is not slowest
            age = 2.0 if n % 20 else (45.0 if n % 40 else 3600.0)  # 95 % online
            conn.execute(
                update(DeviceRow)
                .where(DeviceRow.device_id == device_id)
                .values(
                    last_heartbeat_at=now - timedelta(seconds=age),
                    train_samples_per_s=speed,
                    drained_at=now if n % 97 == 0 else None,
                )
            )
            conn.execute(
                update(DeviceStatusRow)
                .where(DeviceStatusRow.device_id == device_id)
                .values(
                    heartbeat={
                        "device_id": device_id,
                        "cpu_percent": float(n % 100),
                        "memory_percent": 40.0,
                        "max_temp_c": 45.0 + n % 30,
                        "power_mode": "MAXN",
                        "activity": "idle",
                        "supernode_state": "running",
                    },
                    capabilities=_capabilities(speed),
                )
            )
    engine.dispose()


def _capabilities(speed: float) -> dict[str, Any]:
    from fl_shared.capabilities import Capabilities, CpuInfo, Identity, MemoryInfo, SpeedScore

    return Capabilities(
        identity=Identity(arch="x86_64", os_pretty_name="Debian GNU/Linux 12 (bookworm)"),
        cpu=CpuInfo(model="Intel(R) Xeon(R) CPU", cores=8, max_freq_mhz=3000.0),
        memory=MemoryInfo(total_bytes=16 * 1024**3, available_bytes=12 * 1024**3),
        speed=SpeedScore(torch_train_samples_per_s=speed),
    ).model_dump(mode="json")


def serve(state_dir: Path) -> tuple[ManagedProcess, str]:
    """``fl-coordinator serve`` in the development mode on the seeded state dir."""
    port = free_port()
    coordinator = ManagedProcess(
        "coordinator",
        [
            str(Path(sys.executable).parent / "fl-coordinator"),
            "serve",
            "--insecure-dev",
            "--port",
            str(port),
            "--superlink-port",
            str(free_port()),
            "--state-dir",
            str(state_dir),
            "--log-level",
            "warning",
        ],
        log_file=state_dir / "coordinator.log",
    )
    coordinator.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return coordinator, url
        except httpx.HTTPError:
            pass
        if coordinator.poll() is not None:
            break
        time.sleep(0.3)
    coordinator.stop()
    raise RuntimeError(f"the coordinator did not start; see {state_dir / 'coordinator.log'}")


ROWS_JS = "document.querySelectorAll('[data-testid=device-table] tbody tr')"


def measure(url: str, repeats: int, search: str) -> list[dict[str, float]]:
    """Open the fleet page ``repeats`` times in fresh contexts; time it in the browser."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    samples = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        try:
            for _ in range(repeats):
                # The page's CSP forbids eval, which Playwright's wait_for_function needs.
                context = browser.new_context(
                    viewport={"width": 1280, "height": 900}, bypass_csp=True
                )
                page = context.new_page()
                page.goto(f"{url}/", wait_until="commit")
                page.wait_for_function(
                    f"{ROWS_JS}.length >= {ROWS} && "
                    "/\\d/.test(document.querySelector('[data-testid=count-total]')"
                    "?.textContent ?? '')",
                    timeout=30_000,
                    polling="raf",
                )
                interactive = page.evaluate("performance.now()")
                first = page.evaluate(f"{ROWS_JS}[0].dataset.deviceId")
                started = page.evaluate("performance.now()")
                page.locator("button[data-sort=speed]").click()
                page.wait_for_function(
                    f"{ROWS_JS}[0]?.dataset.deviceId !== {json.dumps(first)}",
                    polling="raf",
                    timeout=30_000,
                )
                sort_ms = page.evaluate("performance.now()") - started
                started = page.evaluate("performance.now()")
                page.get_by_test_id("filter-search").fill(search)
                page.wait_for_function(
                    f"{ROWS_JS}.length === 1 && {ROWS_JS}[0].dataset.deviceId === "
                    f"{json.dumps(search)}",
                    polling="raf",
                    timeout=30_000,
                )
                search_ms = page.evaluate("performance.now()") - started
                samples.append(
                    {"interactive_ms": interactive, "sort_ms": sort_ms, "search_ms": search_ms}
                )
                context.close()
        finally:
            browser.close()
    return samples


def run_target(devices: int, repeats: int) -> dict[str, Any]:
    """Seed, serve and measure one fleet size."""
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        state = Path(tmp)
        started = time.monotonic()
        seed(f"sqlite:///{state / 'registry.db'}", devices)
        seeded_s = time.monotonic() - started
        coordinator, url = serve(state)
        try:
            # The search term matches exactly one device id (ids are zero-padded).
            samples = measure(url, repeats, DEVICE_ID.format(devices - 1))
        finally:
            coordinator.stop(grace_s=20)
    result: dict[str, Any] = {"devices": devices, "seed_s": round(seeded_s, 1)}
    for key in ("interactive_ms", "sort_ms", "search_ms"):
        values = [s[key] for s in samples]
        result[key] = {
            "median": round(statistics.median(values), 1),
            "max": round(max(values), 1),
            "samples": [round(v, 1) for v in values],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--baseline-devices", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench/results/dashboard_fleet_page.json"
    )
    args = parser.parse_args()

    baseline = run_target(args.baseline_devices, args.repeats)
    fleet = run_target(args.devices, args.repeats)
    ratios = {
        key: round(fleet[key]["median"] / baseline[key]["median"], 2)
        for key in ("interactive_ms", "sort_ms", "search_ms")
    }
    print(f"{'devices':>8} {'interactive ms':>15} {'sort ms':>9} {'search ms':>10}  (median/max)")
    for target in (baseline, fleet):
        print(
            f"{target['devices']:>8} "
            f"{target['interactive_ms']['median']:>7.0f}/{target['interactive_ms']['max']:<7.0f}"
            f"{target['sort_ms']['median']:>5.0f}/{target['sort_ms']['max']:<5.0f}"
            f"{target['search_ms']['median']:>5.0f}/{target['search_ms']['max']:<5.0f}"
        )
    print(f"ratio {args.devices} / {args.baseline_devices} devices (medians): {ratios}")
    goal = fleet["interactive_ms"]["max"] <= 2000
    print(f"goal: interactive <= 2000 ms with {args.devices} devices (every repeat): {goal}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": machine_info(("fastapi", "uvicorn", "sqlalchemy", "playwright")),
                "chromium": subprocess.run(
                    [shutil.which("chromium") or "chromium", "--version"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout.strip(),
                "baseline": baseline,
                "fleet": fleet,
                "ratio_fleet_to_baseline": ratios,
                "goal_interactive_le_2000ms": goal,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
