"""Errors of the edge agent.

FlAgentError
 ├── AgentConfigError           bad settings; exit EXIT_CONFIG (systemd must not restart-loop)
 ├── AlreadyEnrolled            `enroll` over an existing identity without --force
 ├── UntrustedCoordinator       the coordinator's CA or TLS certificate failed the trust check
 ├── CoordinatorRejected        the coordinator answered 4xx (e.g. 426: the agent is too old)
 │    ├── CredentialRejected    401 on a device call: the credential is revoked or replaced
 │    └── EnrollmentRefused     401/403 on enroll: the token is wrong, used or expired
 └── CoordinatorUnreachable     transport failure or 5xx talking to the coordinator (retried)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
# `enroll` only: the daemon retries an unreachable coordinator for ever.
EXIT_UNREACHABLE = 3
EXIT_UNTRUSTED = 4
# A refusal that retrying cannot fix (a bad enrollment token, a revoked credential, an agent
# too old): systemd's RestartPreventExitStatus lists it next to EXIT_CONFIG.
EXIT_REJECTED = 5
EXIT_ALREADY_ENROLLED = 6


class FlAgentError(Exception):
    """Root of every agent error."""

    exit_code = EXIT_FAILURE


class AgentConfigError(FlAgentError):
    """The settings are invalid; the message says which and how to fix it."""

    exit_code = EXIT_CONFIG


class AlreadyEnrolled(FlAgentError):
    """This state directory already holds an enrolled identity (``--force`` replaces it)."""

    exit_code = EXIT_ALREADY_ENROLLED


class UntrustedCoordinator(FlAgentError):
    """The coordinator's CA does not match the pinned fingerprint, or its certificate fails."""

    exit_code = EXIT_UNTRUSTED


class CoordinatorRejected(FlAgentError):
    """The coordinator refused a request for a reason retrying will not fix."""

    exit_code = EXIT_REJECTED


class CredentialRejected(CoordinatorRejected):
    """401 on a device call: the device credential is not (or no longer) valid."""


class EnrollmentRefused(CoordinatorRejected):
    """The coordinator refused the enrollment token (wrong, already used or expired)."""


class CoordinatorUnreachable(FlAgentError):
    """The coordinator could not be reached or answered 5xx; worth retrying."""

    exit_code = EXIT_UNREACHABLE
