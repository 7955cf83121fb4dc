"""Which packages the system tests install, and what each must provide."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DebUnderTest:
    """A built package and what installing it must provide."""

    name: str
    path: Path
    version: str  # upstream version, as `<command> --version` prints it
    commands: tuple[str, ...]
    conffile: str
    user: str
    # The coordinator runs right after install (its postinst runs `fl-coordinator init`); an
    # agent that is not enrolled yet must stop with EXIT_CONFIG (2) and not restart-loop.
    runs_unconfigured: bool

    @property
    def unit(self) -> str:
        return f"{self.name}.service"


# What each package must install; the .deb files themselves come from `make deb`.
PACKAGES = {
    "fl-edge-agent": (("fl-edge-agent",), "/etc/fl-edge-agent/agent.toml", "fl-agent", False),
    "fl-coordinator": (
        ("fl-coordinator", "flctl"),
        "/etc/fl-coordinator/coordinator.toml",
        "fl-coordinator",
        True,
    ),
}
