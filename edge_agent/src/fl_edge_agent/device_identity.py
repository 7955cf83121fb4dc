"""DeviceIdentity: the device id the coordinator gave us, kept across restarts."""

from __future__ import annotations

import json
from pathlib import Path

from fl_shared.atomic_write import atomic_write_bytes


class DeviceIdentity:
    """Reads and writes ``<state_dir>/device.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "device.json"

    def load(self) -> str | None:
        """The persisted device id, or None before the first enrollment."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            # A damaged file must not brick the device: enroll again under a new id.
            return None
        device_id = data.get("device_id") if isinstance(data, dict) else None
        return device_id if isinstance(device_id, str) and device_id else None

    def save(self, device_id: str) -> None:
        """Persist the id atomically."""
        atomic_write_bytes(self.path, json.dumps({"device_id": device_id}).encode(), mode=0o600)
