"""Errors of the coordinator.

FlCoordinatorError
 ├── ConfigError            bad settings; exit EXIT_CONFIG
 ├── PortInUseError         a port we must listen on is taken; exit EXIT_PORT_IN_USE
 ├── SuperLinkError         the supervised SuperLink failed to start or answer
 ├── SuperLinkUnreachable   the Control API could not be reached (HTTP 503)
 ├── RunNotFound            no run with that id (HTTP 404)
 ├── RunAlreadyFinished     the run has ended; it cannot be stopped (HTTP 409)
 ├── DeviceNotFound         no device with that id (HTTP 404)
 ├── DeviceRevoked          an administrator revoked the device (HTTP 403)
 ├── RegistryError          the registry database cannot be opened or migrated
 └── NotEnoughDevices       a run waited in vain for its minimum of devices
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_PORT_IN_USE = 3
EXIT_SUPERLINK = 4


class FlCoordinatorError(Exception):
    """Root of every coordinator error."""

    exit_code = EXIT_FAILURE


class ConfigError(FlCoordinatorError):
    """The settings are invalid; the message says which and how to fix it."""

    exit_code = EXIT_CONFIG


class PortInUseError(FlCoordinatorError):
    """A port the coordinator must listen on is already taken."""

    exit_code = EXIT_PORT_IN_USE


class SuperLinkError(FlCoordinatorError):
    """The SuperLink did not start or stopped answering."""

    exit_code = EXIT_SUPERLINK


class SuperLinkUnreachable(FlCoordinatorError):
    """The SuperLink's Control API could not be reached."""


class RunNotFound(FlCoordinatorError):
    """No run with that id."""


class RunAlreadyFinished(FlCoordinatorError):
    """The run has already ended, so it cannot be stopped (or changed) any more."""


class DeviceNotFound(FlCoordinatorError):
    """No device with that id."""


class DeviceRevoked(FlCoordinatorError):
    """The device was revoked: its registrations and heartbeats are refused."""


class RegistryError(FlCoordinatorError):
    """The registry database could not be reached or brought to the current schema."""


class NotEnoughDevices(FlCoordinatorError):
    """Too few devices connected within the run's wait timeout."""
