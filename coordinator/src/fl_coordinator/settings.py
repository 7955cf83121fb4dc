"""CoordinatorSettings: one frozen object from flags, FL_COORDINATOR_* variables and a TOML file."""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from fl_coordinator.model_store import DEFAULT_KEEP_LAST
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
    # Device states by heartbeat age: online up to stale-after, stale up to offline-after.
    # None: 2 x heartbeat_interval_s, and heartbeat_timeout_s.
    device_stale_after_s: float | None = Field(default=None, gt=0)
    device_offline_after_s: float | None = Field(default=None, gt=0)
    run_poll_interval_s: float = Field(default=2.0, gt=0)
    # Runs interrupted by a coordinator or SuperLink crash continue from their last
    # checkpoint when the coordinator starts again (off: they are marked failed).
    resume_interrupted_runs: bool = True
    # Model store retention: each run keeps its best round plus this many latest rounds.
    model_keep_last: int = DEFAULT_KEEP_LAST
    # Devices reach the SuperLink's Fleet API (and nothing else of it) through a TLS gateway
    # on fleet_host (default: host) and fleet_port; fleet_address is what they are told at
    # enrollment (host:port; default: that host and port).
    fleet_host: str = ""
    fleet_port: int = Field(default=9092, ge=1, le=65535)
    fleet_address: str = ""
    # DEVELOPMENT ONLY (`--insecure-dev`): plain HTTP everywhere, no SuperNode authentication,
    # REST calls without credentials act as an admin.
    insecure: bool = False
    # `--public-read-only`: REST calls without a credential may use every read route (devices,
    # runs, models and their downloads, the fleet summary), as for a read-only token; admin
    # and device routes still need their credential. Off by default.
    public_read_only: bool = False
    log_level: str = "info"

    @model_validator(mode="after")
    def _check(self) -> CoordinatorSettings:
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_timeout_s must be larger than heartbeat_interval_s")
        if self.offline_after_s <= self.heartbeat_interval_s:
            raise ValueError("device_offline_after_s must be larger than heartbeat_interval_s")
        if self.stale_after_s > self.offline_after_s:
            raise ValueError(
                f"device_stale_after_s ({self.stale_after_s:g}) must not be larger than "
                f"device_offline_after_s ({self.offline_after_s:g})"
            )
        return self

    @field_validator("model_keep_last", mode="wrap")
    @classmethod
    def _check_model_keep_last(cls, value: object, parse: ValidatorFunctionWrapHandler) -> int:
        try:
            kept = None if isinstance(value, bool) else int(parse(value))
        except ValidationError:
            kept = None
        if kept is None or kept < 1:
            # One message for 0, -2 and "three": what the setting means and how to fix it.
            raise ValueError(
                f"got {value!r}: set a whole number of latest rounds to keep, 1 or more, with "
                "FL_COORDINATOR_MODEL_KEEP_LAST or model_keep_last in [coordinator] "
                f"(default {DEFAULT_KEEP_LAST}; the best round is kept besides)"
            )
        return kept

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value:
            return value
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(
                "not a database URL: use sqlite:////path/registry.db or "
                "postgresql+psycopg://user:password@host:5432/dbname"
            ) from exc
        if url.drivername in ("postgres", "postgresql"):
            # SQLAlchemy's default PostgreSQL driver is psycopg2; we ship psycopg 3.
            url = url.set(drivername="postgresql+psycopg")
        if url.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
            raise ValueError(
                f"unsupported database {url.drivername!r}: use sqlite:///... or "
                "postgresql+psycopg://..."
            )
        return url.render_as_string(hide_password=False)

    @property
    def resolved_database_url(self) -> str:
        """The registry URL: the configured one, else a SQLite file in the state dir."""
        return self.database_url or f"sqlite:///{self.state_dir / 'registry.db'}"

    @property
    def stale_after_s(self) -> float:
        """Heartbeat age after which an online device counts as stale."""
        if self.device_stale_after_s is not None:
            return self.device_stale_after_s
        # Never past the offline threshold: equal thresholds simply skip the stale state.
        return min(2 * self.heartbeat_interval_s, self.offline_after_s)

    @property
    def offline_after_s(self) -> float:
        """Heartbeat age after which a device counts as offline."""
        return self.device_offline_after_s or self.heartbeat_timeout_s

    @property
    def model_store_dir(self) -> Path:
        """Where checkpoints are kept."""
        return self.state_dir / "models"

    @property
    def api_url(self) -> str:
        """The REST API as reached from this host (used by the ServerApp to report)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"{'http' if self.insecure else 'https'}://{host}:{self.port}"

    @property
    def pki_dir(self) -> Path:
        """The CA and server certificate made by `fl-coordinator init`."""
        return self.state_dir / "pki"

    @property
    def gateway_host(self) -> str:
        """Where the Fleet API gateway listens."""
        return self.fleet_host or self.host

    @property
    def advertised_fleet_address(self) -> str:
        """host:port of the Fleet API as devices reach it (the SuperLink in development mode)."""
        if self.fleet_address:
            return self.fleet_address
        if self.insecure:
            return self.superlink_address
        host = self.gateway_host
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
        return f"{host}:{self.fleet_port}"

    @property
    def superlink_address(self) -> str:
        """host:port of the SuperLink's single HTTP port."""
        return f"{self.superlink_host}:{self.superlink_port}"
