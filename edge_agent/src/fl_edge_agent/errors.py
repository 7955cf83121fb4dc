"""Errors of the edge agent.

FlAgentError
 ├── AgentConfigError        bad settings; exit EXIT_CONFIG (systemd must not restart-loop)
 ├── CoordinatorRejected     the coordinator answered 4xx to enrollment (e.g. too old)
 └── CoordinatorUnreachable  transport failure talking to the coordinator (retried)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_REJECTED = 5


class FlAgentError(Exception):
    """Root of every agent error."""

    exit_code = EXIT_FAILURE


class AgentConfigError(FlAgentError):
    """The settings are invalid; the message says which and how to fix it."""

    exit_code = EXIT_CONFIG


class CoordinatorRejected(FlAgentError):
    """The coordinator refused a request for a reason retrying will not fix."""

    exit_code = EXIT_REJECTED


class CoordinatorUnreachable(FlAgentError):
    """The coordinator could not be reached or answered 5xx; worth retrying."""
