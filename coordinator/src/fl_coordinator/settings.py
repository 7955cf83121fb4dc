"""CoordinatorSettings: one frozen object from flags, FL_COORDINATOR_* variables and a TOML file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from fl_shared.catalog import DEFAULT_FASHION_MNIST_DIR
from fl_shared.file_settings import FileSettings


class CoordinatorSettings(FileSettings):
    """Everything `fl-coordinator serve` needs; validated once in main()."""

    model_config = SettingsConfigDict(env_prefix="FL_COORDINATOR_", frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    state_dir: Path = Path("/var/lib/fl-coordinator")
    database_url: str = ""
    superlink_host: str = "127.0.0.1"
    superlink_port: int = Field(default=8000, ge=1, le=65535)
    data_dir: Path = Path(DEFAULT_FASHION_MNIST_DIR)
    heartbeat_interval_s: float = Field(default=15.0, gt=0)
    # Three missed beats (with their ±10 % jitter) before a device counts as offline.
    heartbeat_timeout_s: float = Field(default=50.0, gt=0)
    run_poll_interval_s: float = Field(default=2.0, gt=0)
    insecure: bool = False
    log_level: str = "info"

    @model_validator(mode="after")
    def _check(self) -> CoordinatorSettings:
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_timeout_s must be larger than heartbeat_interval_s")
        return self

    @property
    def resolved_database_url(self) -> str:
        """The registry URL: the configured one, else a SQLite file in the state dir."""
        return self.database_url or f"sqlite:///{self.state_dir / 'registry.db'}"

    @property
    def model_store_dir(self) -> Path:
        """Where checkpoints are kept."""
        return self.state_dir / "models"

    @property
    def api_url(self) -> str:
        """The REST API as reached from this host (used by the ServerApp to report)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def superlink_address(self) -> str:
        """host:port of the SuperLink's single HTTP port."""
        return f"{self.superlink_host}:{self.superlink_port}"
