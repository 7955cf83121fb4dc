"""The coordinator's REST app on a real SQLite registry, with a fake Control API (for tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from fl_coordinator.api_app import create_app
from fl_coordinator.registry import Registry
from fl_coordinator.run_service import RunService
from fl_coordinator.settings import CoordinatorSettings


@dataclass
class Harness:
    """What a test drives and inspects."""

    client: TestClient
    registry: Registry
    service: RunService
    settings: CoordinatorSettings


class FakeControl:
    """Stands in for the SuperLink's Control API: keeps the run configs it is handed."""

    def __init__(self) -> None:
        self.configs: list[dict[str, Any]] = []

    def start_run(self, run_config: dict[str, Any]) -> int:
        self.configs.append(run_config)
        return 4242

    def run_state(self, flower_run_id: int) -> None:
        return None


@contextmanager
def api_harness(state_dir: Path, control: Any) -> Iterator[Harness]:
    """Registry in ``state_dir``, ``control`` standing in for the SuperLink; closed after."""
    settings = CoordinatorSettings(state_dir=state_dir, insecure=True)
    registry = Registry(settings.resolved_database_url)
    registry.create_schema()
    service = RunService(registry, control, settings)
    try:
        with TestClient(create_app(registry, service, settings)) as client:
            yield Harness(client, registry, service, settings)
    finally:
        registry.close()
