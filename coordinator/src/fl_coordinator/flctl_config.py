"""Where flctl finds the coordinator: flag, then FLCTL_* environment, then a TOML config file."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from fl_coordinator.flctl_api import EXIT_USAGE, CliError

DEFAULT_URL = "http://127.0.0.1:8080"


def config_path() -> Path:
    """``$FLCTL_CONFIG``, else ``$XDG_CONFIG_HOME/flctl/config.toml`` (~/.config by default)."""
    if explicit := os.environ.get("FLCTL_CONFIG"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "flctl" / "config.toml"


@dataclass(frozen=True)
class Connection:
    """The coordinator's REST API and the token to present (if any)."""

    url: str
    token: str | None
    ca_file: str | None = None


def resolve(url_flag: str | None, token_flag: str | None, ca_flag: str | None = None) -> Connection:
    """Flags beat FLCTL_URL / FLCTL_TOKEN / FLCTL_CA_FILE, which beat the config file's
    ``url`` / ``token`` / ``ca_file``."""
    path = config_path()
    file: dict[str, object] = {}
    if path.is_file():
        try:
            file = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise CliError(f"cannot read {path}: {exc} (fix or remove it)", EXIT_USAGE) from exc
        unknown = sorted(set(file) - {"url", "token", "ca_file"})
        if unknown:
            raise CliError(
                f"{path}: unknown keys {', '.join(unknown)} (only url, token and ca_file)",
                EXIT_USAGE,
            )
    url = url_flag or os.environ.get("FLCTL_URL") or str(file.get("url") or DEFAULT_URL)
    token = token_flag or os.environ.get("FLCTL_TOKEN") or file.get("token")
    ca_file = ca_flag or os.environ.get("FLCTL_CA_FILE") or file.get("ca_file")
    return Connection(
        url=url, token=str(token) if token else None, ca_file=str(ca_file) if ca_file else None
    )
