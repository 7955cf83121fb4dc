"""`fl-coordinator serve` under Type=notify: READY=1 when the API answers, STOPPING=1 on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
from tests.notify_receiver import notify_collector

from fl_coordinator.local_fleet import free_port, program


def test_serve_notifies_systemd_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    api_port, superlink_port = free_port(), free_port()
    argv = [
        program("fl-coordinator"),
        "serve",
        "--insecure-dev",
        "--port",
        str(api_port),
        "--superlink-port",
        str(superlink_port),
        "--state-dir",
        str(tmp_path / "state"),
    ]
    log_path = tmp_path / "coordinator.log"
    with notify_collector() as systemd, log_path.open("w") as log:
        # WATCHDOG_USEC=1 s, as WatchdogSec=1 would set it: a ping every 0.5 s.
        env = os.environ | {"NOTIFY_SOCKET": systemd.notify_socket, "WATCHDOG_USEC": "1000000"}
        coordinator = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            ready = systemd.wait_for(b"READY=1", timeout_s=90)
            # No retry: READY=1 means the REST API already answers.
            health = httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=5)
            systemd.wait_for(b"WATCHDOG=1", timeout_s=5)

            coordinator.send_signal(signal.SIGTERM)
            stopping = systemd.wait_for(b"STOPPING=1", timeout_s=20)
            returncode = coordinator.wait(timeout=30)
        finally:
            if coordinator.poll() is None:
                coordinator.kill()
                coordinator.wait(timeout=10)
        messages = systemd.messages()

    output = log_path.read_text()
    assert health.status_code == 200 and health.json()["status"] == "ok", output
    assert (
        ready
        == (
            f"READY=1\nSTATUS=serving API on http://127.0.0.1:{api_port}, "
            f"SuperLink 127.0.0.1:{superlink_port}"
        ).encode()
    )
    assert messages[0] == ready, messages
    assert stopping.startswith(b"STOPPING=1\nSTATUS=stopping"), messages
    assert messages[-1] == stopping, messages
    assert returncode == 0, output
