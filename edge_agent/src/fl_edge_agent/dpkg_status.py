"""Installed Debian package versions, read from /var/lib/dpkg/status."""

from __future__ import annotations

import re

from fl_edge_agent.system_root import SystemRoot

DPKG_STATUS = "var/lib/dpkg/status"


def read_dpkg_versions(root: SystemRoot) -> dict[str, str]:
    """Package name -> version for every installed package; raises OSError when unreadable."""
    versions: dict[str, str] = {}
    for stanza in re.split(r"\n\s*\n", root.read_text(DPKG_STATUS)):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith((" ", "\t")):
                fields[key.strip()] = value.strip()
        name, version = fields.get("Package"), fields.get("Version")
        if name and version and "installed" in fields.get("Status", "installed").split():
            versions[name] = version
    return versions


def upstream_version(debian_version: str) -> str:
    """``36.3.0-20240506102626`` -> ``36.3.0``; ``8.6.2.3-1+cuda12.2`` -> ``8.6.2.3``."""
    without_epoch = debian_version.split(":", 1)[-1]
    return without_epoch.split("-", 1)[0].split("+", 1)[0]
