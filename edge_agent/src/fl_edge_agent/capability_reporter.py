"""CapabilityReporter: probes the device in a child process and reports what changed."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from fl_edge_agent.coordinator_client import CoordinatorClient
from fl_edge_agent.errors import CredentialRejected, FlAgentError
from fl_shared.capabilities import Capabilities

log = structlog.get_logger(__name__)

ProbeRunner = Callable[[Sequence[str], float], str]


def _ignore(_exc: CredentialRejected) -> None:
    return None


def run_probe_process(argv: Sequence[str], timeout_s: float) -> str:
    """Run the probe and return its stdout (raises on failure or timeout)."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=True)
    return done.stdout


class CapabilityReporter:
    """Sends capabilities at start, then again whenever their fingerprint changes.

    The probe runs as `fl-edge-agent probe --json` in a child process: it imports torch and
    ONNX Runtime, which must never weigh on the long-running daemon. The first probe runs the
    speed benchmark; later ones skip it and keep the measured speed.
    """

    def __init__(
        self,
        client: CoordinatorClient,
        device_id: Callable[[], str | None],
        *,
        state_dir: Path,
        coordinator_url: str,
        interval_s: float = 600.0,
        budget_s: float = 2.0,
        run: ProbeRunner = run_probe_process,
        on_credential_rejected: Callable[[CredentialRejected], None] = _ignore,
    ) -> None:
        self._on_credential_rejected = on_credential_rejected
        self._client = client
        self._device_id = device_id
        self._state_dir = state_dir
        self._coordinator_url = coordinator_url
        self.interval_s = interval_s
        self._budget_s = budget_s
        self._run = run
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.latest: Capabilities | None = None
        self._sent_fingerprint: str | None = None

    def argv(self, benchmark: bool) -> list[str]:
        """The probe command line."""
        argv = [
            sys.executable,
            "-m",
            "fl_edge_agent.cli",
            "probe",
            "--json",
            "--state-dir",
            str(self._state_dir),
            "--coordinator-url",
            self._coordinator_url,
            "--budget-s",
            str(self._budget_s),
        ]
        return argv if benchmark else [*argv, "--no-benchmark"]

    def probe(self) -> Capabilities | None:
        """Probe once (benchmark only the first time); None if the probe failed."""
        benchmark = self.latest is None
        try:
            out = self._run(self.argv(benchmark), self._budget_s + 120.0)
            caps = Capabilities.model_validate_json(out)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            log.warning("probe_failed", error=str(exc))
            return None
        if not benchmark and self.latest is not None:
            caps = caps.model_copy(update={"speed": self.latest.speed})
        self.latest = caps
        return caps

    def report(self, force: bool = False) -> bool:
        """Send the latest capabilities if they changed (or ``force``); True if sent."""
        with self._lock:
            caps, device_id = self.latest, self._device_id()
            if caps is None or device_id is None:
                return False
            fingerprint = caps.fingerprint()
            if not force and fingerprint == self._sent_fingerprint:
                return False
            try:
                self._client.report_capabilities(device_id, caps)
            except CredentialRejected as exc:
                self._on_credential_rejected(exc)
                return False
            except FlAgentError as exc:
                log.warning("capabilities_not_sent", error=str(exc))
                return False
            self._sent_fingerprint = fingerprint
            log.info("capabilities_sent", device_id=device_id, fingerprint=fingerprint)
            return True

    def start(self) -> None:
        """Probe and report now, then every interval, in a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="capabilities", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop probing (a probe in flight finishes in its own process)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            if self.probe() is not None:
                self.report()
            if self._stop.wait(self.interval_s):
                return
