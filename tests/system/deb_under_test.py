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
    # What its unit says while it runs right after install: the coordinator is serving (its
    # postinst runs `fl-coordinator init`); an agent not enrolled yet waits for `enroll`.
    status_after_install: str

    @property
    def unit(self) -> str:
        return f"{self.name}.service"


# What each package must install; the .deb files themselves come from `make deb`.
PACKAGES = {
    "fl-edge-agent": (
        ("fl-edge-agent",),
        "/etc/fl-edge-agent/agent.toml",
        "fl-agent",
        "waiting for enrollment",
    ),
    "fl-coordinator": (
        ("fl-coordinator", "flctl"),
        "/etc/fl-coordinator/coordinator.toml",
        "fl-coordinator",
        "serving",
    ),
}
