"""EnrolledIdentity: what `fl-edge-agent enroll` left in ``<state_dir>/identity/``.

The daemon reads it on every start, so this module stays light: no `cryptography` (only
`enroll` generates keys), the stdlib's ``ssl`` for the coordinator's CA.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from fl_edge_agent.errors import AgentConfigError
from fl_edge_agent.settings import AgentSettings

IDENTITY_DIR = "identity"
REENROLL_HINT = (
    "enroll again with a new token: fl-edge-agent enroll --coordinator URL --token TOKEN --force"
)


class EnrollmentRecord(BaseModel):
    """``identity/enrollment.json``: who the coordinator says this device is."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    device_id: str
    node_id: int
    coordinator_url: str
    superlink_address: str
    enrolled_at: datetime
    # The file in identity/ that verifies the coordinator's REST API; None: the system's
    # trust store (the coordinator had a publicly trusted certificate at enrollment).
    coordinator_ca_file: str | None = "ca.crt"


class IdentityFiles:
    """The paths of one device identity; ``load()`` reads them."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / IDENTITY_DIR
        self.private_key = self.dir / "supernode.key"
        self.public_key = self.dir / "supernode.key.pub"
        self.ca = self.dir / "ca.crt"
        self.coordinator_ca = self.dir / "coordinator-ca.crt"
        self.credential = self.dir / "credential"
        # Written last by `enroll`: its presence is what "enrolled" means.
        self.record = self.dir / "enrollment.json"

    def exists(self) -> bool:
        """True when an enrollment was completed here (raises AgentConfigError if unreadable)."""
        try:
            return self.record.exists()
        except OSError as exc:
            raise AgentConfigError(
                f"cannot read {self.dir}: {exc.strerror} (run as the agent's user, e.g. "
                "sudo -u fl-agent)"
            ) from exc

    def load(self) -> EnrolledIdentity | None:
        """The enrolled identity, None when there is none; AgentConfigError when damaged."""
        if not self.exists():
            return None
        try:
            record = EnrollmentRecord.model_validate_json(self.record.read_bytes())
            credential = self.credential.read_text().strip()
            for needed in (self.private_key, self.ca):
                if not needed.is_file():
                    raise FileNotFoundError(f"{needed.name} is missing")
        except (OSError, ValidationError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise AgentConfigError(
                f"the device identity in {self.dir} is damaged ({_one_line(reason)}): "
                f"{REENROLL_HINT}"
            ) from exc
        if not credential:
            raise AgentConfigError(f"{self.credential} is empty: {REENROLL_HINT}")
        return EnrolledIdentity(record=record, credential=credential, files=self)


@dataclass(frozen=True)
class EnrolledIdentity:
    """An enrolled device: its record, its credential and where its key and CA lie."""

    record: EnrollmentRecord
    credential: str = field(repr=False)
    files: IdentityFiles = field(repr=False)

    @property
    def device_id(self) -> str:
        """The registry's id of this device."""
        return self.record.device_id

    def apply(self, settings: AgentSettings) -> AgentSettings:
        """The settings with the enrolled coordinator and SuperLink, unless set explicitly.

        A value set in the file, the environment or a flag wins (the operator may reach the
        coordinator under another name); the credential still only travels to a peer that
        the enrolled CA vouches for.
        """
        update = {
            key: value
            for key, value in (
                ("coordinator_url", self.record.coordinator_url),
                ("superlink", self.record.superlink_address),
            )
            if key not in settings.model_fields_set
        }
        return settings.model_copy(update=update)

    def coordinator_tls(self) -> ssl.SSLContext:
        """How to verify the coordinator: the CA from enrollment, or the system's store."""
        name = self.record.coordinator_ca_file
        if name is None:
            return ssl.create_default_context()
        path = self.files.dir / name
        try:
            return ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:  # SSLError is an OSError; both named for mypy
            raise AgentConfigError(
                f"cannot load the coordinator's CA from {path} ({_one_line(str(exc))}): "
                f"{REENROLL_HINT}"
            ) from exc


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]
