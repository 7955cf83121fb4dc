"""AgentStatus: the running agent's own view, kept in a file for `fl-edge-agent status`."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from fl_shared.atomic_write import atomic_write_bytes

AgentState = Literal["waiting_for_enrollment", "running", "stopped", "revoked", "rejected"]


class AgentStatus(BaseModel):
    """Written after every heartbeat attempt; read by `fl-edge-agent status`."""

    model_config = ConfigDict(extra="ignore")

    pid: int
    # waiting_for_enrollment (`run --wait-for-enrollment` before `enroll`); running; stopped
    # (SIGTERM); revoked (401: the credential is dead, the agent exited and waits for a new
    # enrollment); rejected (401 to a device that never enrolled).
    state: AgentState = "running"
    device_id: str | None
    name: str
    coordinator_url: str
    registered: bool
    supernode_state: str
    supernode_restarts: int
    supernode_pid: int | None
    clientapp_runtime: str = "isolated"
    runtime_state: str | None = None
    runtime_pid: int | None = None
    activity: str
    last_heartbeat_ack_at: datetime | None
    last_error: str | None
    updated_at: datetime

    def is_live(self) -> bool:
        """True while the agent that wrote this file still runs."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def status_path(state_dir: Path) -> Path:
    """Where the agent keeps its status."""
    return state_dir / "status.json"


def write_status(state_dir: Path, status: AgentStatus) -> None:
    """Atomically replace the status file (readable by the agent's user only)."""
    atomic_write_bytes(status_path(state_dir), status.model_dump_json().encode(), mode=0o600)


def read_status(state_dir: Path) -> AgentStatus | None:
    """The last status written, or None if there is none (never started) or it is damaged.

    PermissionError propagates: "not allowed to read it" is not "the agent never ran".
    """
    try:
        return AgentStatus.model_validate_json(status_path(state_dir).read_bytes())
    except PermissionError:
        raise
    except (OSError, ValueError):
        return None
