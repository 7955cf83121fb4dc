"""SystemRoot: reads procfs, sysfs and /etc under a root that tests point at a fixture tree."""

from __future__ import annotations

from pathlib import Path


class SystemRoot:
    """A filesystem root; every path the probe reads is relative to it."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root

    def path(self, relative: str) -> Path:
        """The absolute path of ``relative`` (written without a leading slash) under the root."""
        return self.root / relative.lstrip("/")

    def exists(self, relative: str) -> bool:
        """Whether ``relative`` exists under the root."""
        return self.path(relative).exists()

    def read_text(self, relative: str) -> str:
        """File contents as text; raises OSError when missing or unreadable."""
        return self.path(relative).read_text(encoding="utf-8", errors="replace")

    def read_value(self, relative: str) -> str:
        """A one-value sysfs/device-tree file, stripped of whitespace and trailing NULs."""
        return self.read_text(relative).strip().strip("\0").strip()

    def read_strings(self, relative: str) -> list[str]:
        """A NUL-separated device-tree string list, such as ``compatible``."""
        raw = self.path(relative).read_bytes().decode("utf-8", errors="replace")
        return [part.strip() for part in raw.split("\0") if part.strip()]

    def first_existing(self, *relatives: str) -> str | None:
        """The first of ``relatives`` that exists, or None."""
        return next((rel for rel in relatives if self.exists(rel)), None)

    def glob(self, pattern: str) -> list[Path]:
        """Sorted matches of ``pattern`` (relative to the root)."""
        return sorted(self.root.glob(pattern.lstrip("/")))
