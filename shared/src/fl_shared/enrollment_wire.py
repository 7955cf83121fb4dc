"""Wire models of enrollment and tokens: a device trading a one-time token for its identity."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from fl_shared.capabilities import Capabilities
from fl_shared.wire import (
    _LABELS_SCHEMA,
    LABEL_VALUE_MAX,
    DeviceRegistration,
    StoredText,
    WireModel,
    _check_label_key,
    _check_label_value,
)


class EnrollmentRequest(WireModel):
    """POST /api/v1/enroll: what `fl-edge-agent enroll` sends (no other credential)."""

    enrollment_token: str = Field(min_length=1, max_length=256)
    public_key: StoredText = Field(
        min_length=1, max_length=4096, description="the SuperNode's OpenSSH public key line"
    )
    registration: DeviceRegistration
    capabilities: Capabilities | None = None


class EnrollmentGranted(WireModel):
    """The device's identity; ``device_credential`` is shown this once."""

    device_id: str
    device_credential: str
    ca_certificate: str = Field(description="PEM of the coordinator's CA: trust only it")
    node_id: int = Field(description="the device's Flower node id")
    superlink_address: str = Field(description="host:port of the Fleet API (TLS)")
    heartbeat_interval_s: float


class EnrollmentTokenRequest(WireModel):
    """POST /api/v1/enroll-tokens: a one-time token for one new device."""

    name: StoredText = Field(default="", max_length=128)
    expires_in_s: float = Field(
        default=86_400.0, ge=1, le=366 * 86_400, description="lifetime in s; default 24 h"
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description=f"labels the device gets (values ≤ {LABEL_VALUE_MAX} characters)",
        json_schema_extra=_LABELS_SCHEMA,
    )

    @field_validator("labels")
    @classmethod
    def _valid(cls, value: dict[str, str]) -> dict[str, str]:
        return {_check_label_key(k): _check_label_value(k, v) for k, v in value.items()}


class IssuedSecret(WireModel):
    """A token as created: the secret is shown this once and stored only hashed."""

    token_id: str
    kind: str
    name: str
    token: str
    expires_at: datetime | None


# Every kind of token the coordinator keeps, and the state a listing shows it in.
TokenKind = Literal["admin", "read", "enroll", "device"]
TokenState = Literal["active", "used", "expired", "revoked"]
# The longest lifetime an API token may be given: about ten years.
API_TOKEN_LIFETIME_MAX_S = 3653 * 86_400
# The kinds POST /api/v1/tokens does not make, and where they come from instead.
_MADE_ELSEWHERE = {
    "enroll": "enrollment tokens are made with POST /api/v1/enroll-tokens "
    "(`flctl devices enroll-token`)",
    "device": "device credentials are issued by enrollment (POST /api/v1/enroll with an "
    "enrollment token from `flctl devices enroll-token`)",
}


class ApiTokenRequest(WireModel):
    """POST /api/v1/tokens: an admin or a read-only API token."""

    kind: Literal["admin", "read"] = Field(
        description="admin: every route; read: every GET but the token listing"
    )
    name: StoredText = Field(
        min_length=1, max_length=100, description="who or what it is for, e.g. 'grafana'"
    )
    expires_in_s: int | None = Field(
        default=None,
        ge=1,
        le=API_TOKEN_LIFETIME_MAX_S,
        description="lifetime in s; null or absent: until revoked",
    )

    @field_validator("kind", mode="before")
    @classmethod
    def _api_kind(cls, value: Any) -> Any:
        if isinstance(value, str) and value in _MADE_ELSEWHERE:
            raise ValueError(f"{_MADE_ELSEWHERE[value]}; this route makes 'admin' or 'read'")
        return value


class TokenView(WireModel):
    """A token as listings show it: never its secret or hash."""

    token_id: str
    kind: TokenKind
    name: str
    status: TokenState
    device_id: str | None = Field(description="the device of a device credential")
    labels: dict[str, str] = Field(description="what an enrollment token gives its device")
    created_at: datetime
    expires_at: datetime | None
    used_at: datetime | None = Field(description="when an enrollment token was used")
    revoked_at: datetime | None


class TokenListing(WireModel):
    """GET /api/v1/tokens: tokens, oldest first."""

    items: list[TokenView]
