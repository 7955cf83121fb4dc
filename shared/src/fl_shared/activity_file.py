"""ActivityFile: what a device's ClientApp is doing, handed to the agent through a small file."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fl_shared.atomic_write import atomic_write_bytes

# A ClientApp killed mid-round cannot say it stopped; after this long the file is stale.
STALE_AFTER_S = 3600.0


class ActivityFile:
    """Written by the ClientApp process at the start and end of each message, read by the agent."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self, activity: str) -> None:
        """Record the current activity (atomic replace; readers never see half a file)."""
        data = json.dumps({"activity": activity, "at": time.time()}).encode()
        atomic_write_bytes(self.path, data)

    def read(self, now: float | None = None) -> str:
        """The current activity; "idle" when none is recorded or it is stale."""
        try:
            data = json.loads(self.path.read_text())
            activity, at = str(data["activity"]), float(data["at"])
        except (OSError, ValueError, KeyError, TypeError):
            return "idle"
        if (time.time() if now is None else now) - at > STALE_AFTER_S:
            return "idle"
        return activity
