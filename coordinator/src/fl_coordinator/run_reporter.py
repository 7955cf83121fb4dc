"""RunReporter: the ServerApp's channel back to the coordinator's registry."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import httpx
import structlog

from fl_coordinator.telemetry import record_round_span
from fl_shared.backoff import Backoff
from fl_shared.wire import CandidateListing, RoundReport, RunStatus, RunStatusReport

log = structlog.get_logger(__name__)


class RunReporter:
    """Posts round reports and status changes for one run, retrying briefly on failure."""

    def __init__(
        self,
        base_url: str,
        run_id: int,
        token_file: Path,
        *,
        attempts: int = 5,
        transport: httpx.BaseTransport | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.run_id = run_id
        self._attempts = attempts
        token = token_file.read_text().strip()
        # An https coordinator is trusted through its own CA (run config coordinator-ca-file).
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else True
        )
        self._client = httpx.Client(
            base_url=base_url,
            headers={"X-Run-Token": token},
            timeout=10.0,
            transport=transport,
            verify=verify,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def round(self, report: RoundReport) -> None:
        """Report one finished round (and trace it as an OpenTelemetry span)."""
        attributes = {
            "fl.devices": len(report.devices),
            "fl.eval_accuracy": report.eval_accuracy,
            "fl.eval_loss": report.eval_loss,
            "fl.train_loss": report.train_loss,
            "fl.rejected_updates": len(report.rejected_updates),
            "fl.epsilon": None if report.privacy is None else report.privacy.epsilon,
        }
        record_round_span(
            run_id=self.run_id,
            server_round=report.round,
            seconds=report.seconds,
            attributes={k: v for k, v in attributes.items() if v is not None},
        )
        self._post(f"/api/v1/runs/{self.run_id}/rounds", report.model_dump_json())

    def eligible_devices(self) -> set[str] | None:
        """Device ids this run may use, as the registry says now (None: not reachable)."""
        try:
            response = self._client.get(f"/api/v1/runs/{self.run_id}/eligible-devices")
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("eligible_devices_unavailable", run_id=self.run_id, error=str(exc))
            return None
        return {str(device_id) for device_id in response.json()}

    def candidates(self) -> CandidateListing | None:
        """The devices the next round may select from (None: the registry is not reachable)."""
        try:
            response = self._client.get(f"/api/v1/runs/{self.run_id}/candidates")
            response.raise_for_status()
            return CandidateListing.model_validate_json(response.content)
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("candidates_unavailable", run_id=self.run_id, error=str(exc))
            return None

    def status(self, status: RunStatus, detail: str = "") -> None:
        """Report a status change."""
        body = RunStatusReport(status=status, detail=detail).model_dump_json()
        self._post(f"/api/v1/runs/{self.run_id}/status", body)

    def _post(self, path: str, body: str) -> None:
        backoff = Backoff(base_s=0.5, cap_s=5.0)
        for attempt in range(1, self._attempts + 1):
            try:
                response = self._client.post(
                    path, content=body, headers={"Content-Type": "application/json"}
                )
                if response.status_code < 500:
                    response.raise_for_status()
                    return
            except httpx.TransportError as exc:
                log.warning("report_failed", path=path, attempt=attempt, error=str(exc))
            if attempt < self._attempts:
                time.sleep(backoff.next_wait())
        log.error("report_dropped", path=path, run_id=self.run_id)
