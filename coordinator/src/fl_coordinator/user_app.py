"""A user's own Flower App (FAB) submitted to the fleet: checked before it reaches the SuperLink."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any

from flwr.cli.build import FAB_MAX_SIZE
from flwr.common.config import get_fab_config

# What a run config value may be (Flower's UserConfigValue).
ConfigValue = bool | int | float | str


class InvalidApp(ValueError):
    """The bundle is not a Flower App we can run; the message says what to fix."""


@dataclass(frozen=True)
class AppInfo:
    """What a FAB's pyproject.toml declares."""

    publisher: str
    name: str
    version: str
    serverapp: str
    clientapp: str
    config: dict[str, Any]

    @property
    def source(self) -> str:
        """How runs of this app are labelled in the registry."""
        return f"app:{self.publisher}/{self.name}@{self.version}"


def inspect_app(fab: bytes) -> AppInfo:
    """Read and check a FAB's pyproject.toml; InvalidApp naming the problem otherwise."""
    if len(fab) > FAB_MAX_SIZE:
        raise InvalidApp(
            f"the app bundle is {len(fab)} bytes, over Flower's limit of {FAB_MAX_SIZE}: "
            "leave data and binaries out of the app directory"
        )
    if not zipfile.is_zipfile(io.BytesIO(fab)):
        raise InvalidApp("the app is not a Flower App Bundle (a zip built by `flwr build`)")
    try:
        project = get_fab_config(fab)
    except (ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise InvalidApp(f"the app's pyproject.toml is not a valid Flower App: {exc}") from exc
    app = project.get("tool", {}).get("flwr", {}).get("app", {})
    components = app.get("components", {})  # get_fab_config checked that both are named
    return AppInfo(
        publisher=str(app.get("publisher", "")),
        name=str(project.get("project", {}).get("name", "")),
        version=str(project.get("project", {}).get("version", "")),
        serverapp=str(components["serverapp"]),
        clientapp=str(components["clientapp"]),
        config=dict(app.get("config", {})),
    )


def check_overrides(info: AppInfo, overrides: dict[str, ConfigValue]) -> None:
    """Flower only accepts overrides of keys the app declares: say which ones are unknown."""
    unknown = sorted(set(overrides) - set(_flat_keys(info.config)))
    if unknown:
        known = ", ".join(sorted(_flat_keys(info.config))) or "none"
        raise InvalidApp(
            f"config keys {', '.join(unknown)} are not declared in the app's "
            f"[tool.flwr.app.config] (declared: {known})"
        )


def _flat_keys(config: dict[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in config.items():
        if isinstance(value, dict):
            keys += _flat_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys
