"""AgentSettings: one frozen object from flags, FL_AGENT_* variables and a TOML [agent] table."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from fl_shared.file_settings import FileSettings
from fl_shared.wire import ClientAppRuntime


class AgentSettings(FileSettings):
    """Everything `fl-edge-agent run` needs; validated once in main()."""

    model_config = SettingsConfigDict(env_prefix="FL_AGENT_", frozen=True, extra="forbid")

    name: str = Field(default_factory=socket.gethostname, min_length=1, max_length=128)
    state_dir: Path = Path("/var/lib/fl-edge-agent")
    coordinator_url: str = "http://127.0.0.1:8080"
    superlink: str = "127.0.0.1:8000"
    insecure: bool = False
    supernode_port: int = Field(default=9094, ge=1, le=65535)
    # "warm": one resident ClientApp runtime keeps torch, the app and the data loaded across
    # messages (fast rounds); "isolated": Flower's fresh process per message (less memory
    # between runs, full isolation).
    clientapp_runtime: ClientAppRuntime = "warm"
    # Flower's gRPC health server of the SuperNode, on 127.0.0.1; 0 picks a free port.
    supernode_health_port: int = Field(default=0, ge=0, le=65535)
    # A SuperNode that fails 3 health checks this far apart is hung and gets restarted.
    supernode_health_interval_s: float = Field(default=10.0, gt=0)
    # Capabilities are probed at start and re-checked this often (0: never probe).
    probe_interval_s: float = Field(default=600.0, ge=0)
    probe_budget_s: float = Field(default=2.0, gt=0)
    data_dir: str = ""
    partition_id: int = Field(default=0, ge=0)
    num_partitions: int = Field(default=1, ge=1)
    torch_threads: int = Field(default=0, ge=0)
    labels: dict[str, str] = Field(default_factory=dict)
    heartbeat_interval_s: float | None = Field(default=None, gt=0)
    log_level: str = "info"
    # TEST ONLY: seconds added to every local training, to make this device a straggler in
    # selection tests (docs/device-selection.md). Never set it on a real device.
    test_train_delay_s: float = Field(default=0.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _check(self) -> AgentSettings:
        if self.partition_id >= self.num_partitions:
            raise ValueError(
                f"partition_id {self.partition_id} must be below num_partitions "
                f"{self.num_partitions}"
            )
        if not self.coordinator_url.startswith(("http://", "https://")):
            raise ValueError("coordinator_url must start with http:// or https://")
        return self
