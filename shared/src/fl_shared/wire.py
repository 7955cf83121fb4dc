"""Versioned wire schemas between edge agents, the coordinator, its ServerApp and flctl."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from fl_shared.capabilities import Capabilities
from fl_shared.catalog import DATASET_NAMES, MODEL_NAMES, PARTITIONER_NAMES

# major.minor: fields are only added within a major version; readers ignore unknown fields.
# 1.2 added Device.status (online/stale/offline/drained/revoked), the device detail and history
# schemas, and the Run fields attempt, resumed_from_round, stop_requested, app_source,
# target_labels and selection_policy.
# 1.3 added robust training and differential privacy: the RunRequest fields aggregation,
# trimmed_avg_beta, krum_malicious_devices, screening_mad_k, screening_max_norm, privacy and
# dp_*, and RoundReport.rejected_updates and RoundReport.privacy.
# 1.4 added the dashboard's schemas: FleetSummary, Whoami, SelectionPreview (PreviewDecision),
# and DeviceDetail.selection_history (DeviceSelection).
WIRE_VERSION = "1.4"
WIRE_MAJOR = 1

RunStatus = Literal["pending", "starting", "running", "completed", "failed", "stopped"]
TERMINAL_RUN_STATUSES: frozenset[str] = frozenset({"completed", "failed", "stopped"})
SuperNodeState = Literal["starting", "running", "restarting", "crashed", "stopped"]
# How a device runs its ClientApp: "warm" (one resident runtime, fast rounds) or "isolated"
# (Flower's own fresh process per message).
ClientAppRuntime = Literal["warm", "isolated"]
# online: heartbeat within the stale threshold; stale: within the offline threshold; offline:
# older or none; drained: an administrator keeps it out of new runs; revoked: refused outright.
DeviceState = Literal["online", "stale", "offline", "drained", "revoked"]
DEVICE_STATES: tuple[str, ...] = get_args(DeviceState)
HistoryWindow = Literal["1h", "24h", "7d"]
HISTORY_WINDOWS_S: dict[str, int] = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400}
# Orders of a device listing; a leading "-" reverses one. Ties are broken by device id.
DeviceSort = Literal[
    "registered",
    "-registered",
    "name",
    "-name",
    "last_heartbeat",
    "-last_heartbeat",
    "arch",
    "-arch",
    "speed",
    "-speed",
]
DEVICE_SORTS: tuple[str, ...] = get_args(DeviceSort)
# Who a REST caller is: an admin or read-only token, or nobody in the public read-only mode.
CallerRole = Literal["admin", "read", "public"]
# How a run aggregates the devices' updates, and where it adds differential-privacy noise.
Aggregation = Literal["fedavg", "fedmedian", "fedtrimmedavg", "krum"]
PrivacyMode = Literal["none", "central", "local"]
# Device selection per round (docs/device-selection.md): uniform as Flower, Oort, or ours.
SelectionPolicy = Literal["random", "oort", "capability"]
Accelerator = Literal["cuda"]
# Label keys an administrator sets: letters, digits and . _ / - (no "=": filters are key=value).
LABEL_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
LABEL_VALUE_MAX = 255
# The largest number the registry's INTEGER columns hold (32-bit in PostgreSQL): run ids,
# round numbers, examples per device and round. A larger one is a 422, not a database error.
REGISTRY_INT_MAX = 2**31 - 1
# The registry's column widths for a device's identity (VARCHAR; PostgreSQL enforces them).
DEVICE_ID_MAX = 64


NO_NUL_PATTERN = "^[^\\x00]*$"


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character (\\u0000)")
    return value


class _NoNulSchema:
    """Documents the NUL rule in the JSON schema (the validator gives the message)."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["pattern"] = NO_NUL_PATTERN
        return schema


# A string the registry stores in a text column: PostgreSQL's cannot hold NUL characters.
StoredText = Annotated[str, AfterValidator(_no_nul), _NoNulSchema]


class WireModel(BaseModel):
    """Base of every wire schema: unknown fields are ignored, so newer peers interoperate."""

    model_config = ConfigDict(extra="ignore")


def wire_major(version: str) -> int:
    """Return the major number of a ``major.minor`` schema version (0 when unparseable)."""
    head = version.split(".", 1)[0]
    return int(head) if head.isascii() and head.isdigit() else 0


class DeviceRegistration(WireModel):
    """What an agent sends to enroll (or re-enroll with its persisted id)."""

    schema_version: str = WIRE_VERSION
    device_id: StoredText | None = Field(default=None, max_length=DEVICE_ID_MAX)
    name: StoredText = Field(min_length=1, max_length=128)
    hostname: StoredText = Field(default="", max_length=255)
    platform: StoredText = Field(default="", max_length=255)
    agent_version: StoredText = Field(default="", max_length=64)
    labels: dict[str, StoredText] = Field(
        default_factory=dict, json_schema_extra={"propertyNames": {"pattern": NO_NUL_PATTERN}}
    )

    @field_validator("labels")
    @classmethod
    def _keys_without_nul(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if "\x00" in key:
                raise ValueError(f"label key {key!r} must not contain a NUL character (\\u0000)")
        return value


class DeviceRegistered(WireModel):
    """The coordinator's answer to a registration."""

    schema_version: str = WIRE_VERSION
    device_id: str
    heartbeat_interval_s: float


class Heartbeat(WireModel):
    """A liveness beat from an agent."""

    # Bounds are what the registry can store: a beat outside them is a 422, never a lost batch.
    schema_version: str = Field(default=WIRE_VERSION, max_length=32)
    device_id: StoredText = Field(min_length=1, max_length=DEVICE_ID_MAX)
    supernode_state: SuperNodeState = "running"
    supernode_restarts: int = Field(default=0, ge=0, le=REGISTRY_INT_MAX)
    supernode_hangs: int = Field(default=0, ge=0, le=REGISTRY_INT_MAX)
    # Since wire 1.1: the ClientApp runtime, and the state of the warm one when it is used.
    clientapp_runtime: ClientAppRuntime | None = None
    runtime_state: SuperNodeState | None = None
    runtime_restarts: int = Field(default=0, ge=0, le=REGISTRY_INT_MAX)
    uptime_s: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    agent_version: StoredText = Field(default="", max_length=64)
    cpu_percent: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    memory_percent: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_temp_c: float | None = Field(default=None, allow_inf_nan=False)
    power_mode: StoredText | None = Field(default=None, max_length=64)
    disk_free_bytes: int | None = Field(default=None, ge=0, le=2**53)  # exact in any JSON
    activity: StoredText = Field(default="idle", max_length=256)
    last_contact_at: datetime | None = None


class HeartbeatAck(WireModel):
    """The coordinator's answer to a heartbeat."""

    device_id: str
    server_time: datetime


class Device(WireModel):
    """A device as the registry knows it."""

    device_id: str
    name: str
    hostname: str
    platform: str
    agent_version: str
    labels: dict[str, str]
    registered_at: datetime
    last_heartbeat_at: datetime | None
    online: bool
    supernode_state: str
    last_status: Heartbeat | None = None
    capabilities: Capabilities | None = None
    # Since wire 1.2 (filled from `online` when an older coordinator leaves it out).
    status: DeviceState = "offline"
    status_reason: str = ""
    drained_at: datetime | None = None
    revoked_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _status_from_online(cls, data: Any) -> Any:
        if isinstance(data, dict) and "status" not in data:
            return {**data, "status": "online" if data.get("online") else "offline"}
        return data


class HeartbeatSample(WireModel):
    """One point of a device's heartbeat history; older points summarise ``samples`` beats."""

    at: datetime
    # 0: one raw heartbeat; 300 or 3600: the mean (max for temperature) of a bucket that long.
    resolution_s: int = 0
    samples: int = 1
    cpu_percent: float | None = None
    memory_percent: float | None = None
    max_temp_c: float | None = None
    supernode_state: str = ""
    activity: str = ""


class DeviceParticipation(WireModel):
    """A device's part in one round of one run."""

    run_id: int
    round: int
    num_examples: int
    train_seconds: float
    train_loss: float | None = Field(description="null when the device reported none")


class DeviceSelection(WireModel):
    """One selection decision about a device in one round of one run (since wire 1.4)."""

    run_id: int
    round: int
    selected: bool
    reason: str = ""
    score: float | None = None
    predicted_s: float | None = None


class DeviceDetail(Device):
    """One device with its heartbeat history (when asked for) and the rounds it trained in."""

    heartbeat_history: list[HeartbeatSample] = Field(default_factory=list)
    participation: list[DeviceParticipation] = Field(default_factory=list)
    # Since wire 1.4: every selection decision about the device, newest first (at most 100).
    selection_history: list[DeviceSelection] = Field(default_factory=list)


class DevicePage(WireModel):
    """One page of a device listing, with the number of devices that match the filters."""

    items: list[Device]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class FleetSummary(WireModel):
    """How many devices are in each state now (since wire 1.4).

    The states follow the same rules as the ``status`` filter of a device listing: revoked
    beats drained, drained beats the heartbeat's age.
    """

    online: int
    stale: int
    offline: int
    drained: int
    revoked: int
    total: int
    stale_after_s: float = Field(description="heartbeat age after which a device is stale")
    offline_after_s: float = Field(description="heartbeat age after which a device is offline")
    server_time: datetime


class Whoami(WireModel):
    """Who the coordinator takes the caller for, and the modes it runs in (since wire 1.4)."""

    role: CallerRole = Field(
        description="admin, read (a read-only token) or public (no credential, public "
        "read-only mode)"
    )
    name: str
    token_id: str | None = Field(description="null without a credential")
    development: bool = Field(description="the coordinator runs with --insecure-dev")
    public_read_only: bool = Field(description="reads need no credential (--public-read-only)")


def _check_label_key(key: str) -> str:
    if not LABEL_KEY_PATTERN.fullmatch(key):
        raise ValueError(
            f"label key {key!r} is invalid: use 1-63 letters, digits, '.', '_', '/' or '-', "
            "starting with a letter or digit"
        )
    return key


def _check_label_value(key: str, value: str) -> str:
    if len(value) > LABEL_VALUE_MAX:
        raise ValueError(f"label {key!r}: value is longer than {LABEL_VALUE_MAX} characters")
    if "\x00" in value:
        raise ValueError(f"label {key!r}: value must not contain a NUL character (\\u0000)")
    return value


# The label rules in JSON Schema, for the OpenAPI spec (the validators below give the messages).
_LABELS_SCHEMA: dict[str, Any] = {
    "propertyNames": {"pattern": f"^{LABEL_KEY_PATTERN.pattern}$"},
    "additionalProperties": {
        "type": "string",
        "maxLength": LABEL_VALUE_MAX,
        "pattern": NO_NUL_PATTERN,
    },
}


class DeviceLabels(WireModel):
    """PUT body: the device's complete new set of labels."""

    labels: dict[str, str] = Field(json_schema_extra=_LABELS_SCHEMA)

    @field_validator("labels")
    @classmethod
    def _valid(cls, value: dict[str, str]) -> dict[str, str]:
        return {_check_label_key(k): _check_label_value(k, v) for k, v in value.items()}


class DeviceLabelsPatch(WireModel):
    """PATCH body (JSON merge patch): set the labels given, remove those set to null."""

    labels: dict[str, str | None] = Field(
        json_schema_extra={
            **_LABELS_SCHEMA,
            "additionalProperties": {
                "anyOf": [_LABELS_SCHEMA["additionalProperties"], {"type": "null"}]
            },
        }
    )

    @field_validator("labels")
    @classmethod
    def _valid(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        return {
            _check_label_key(k): None if v is None else _check_label_value(k, v)
            for k, v in value.items()
        }


class DeviceAdminAction(WireModel):
    """Body of drain and revoke: why (shown in listings and in the refusal a device gets)."""

    reason: StoredText = Field(default="", max_length=500)


class RunRequest(WireModel):
    """What an ML engineer asks for when starting a training run."""

    model_config = ConfigDict(
        extra="ignore",
        # The privacy validator's rule, for the OpenAPI spec: central DP averages.
        json_schema_extra={
            "if": {"properties": {"privacy": {"const": "central"}}, "required": ["privacy"]},
            "then": {"properties": {"aggregation": {"const": "fedavg"}}},
        },
    )

    # The enums document the catalogs; the validators below refuse with the valid names.
    model: str = Field(default="cnn", json_schema_extra={"enum": list(MODEL_NAMES)})
    dataset: str = Field(default="fashion-mnist", json_schema_extra={"enum": list(DATASET_NAMES)})
    partitioner: str = Field(default="iid", json_schema_extra={"enum": list(PARTITIONER_NAMES)})
    dirichlet_alpha: float = Field(default=0.5, gt=0)
    num_rounds: int = Field(default=3, ge=1, le=10_000)
    min_devices: int = Field(default=2, ge=1)
    local_epochs: int = Field(default=1, ge=1, le=1000)
    batch_size: int = Field(default=32, ge=1, le=65_536)
    learning_rate: float = Field(default=0.01, gt=0, le=10)
    max_train_samples: int = Field(
        default=0, ge=0, description="per device and round; 0 trains on the whole partition"
    )
    fraction_evaluate: float = Field(default=0.0, ge=0, le=1)
    device_wait_timeout_s: float = Field(default=120.0, gt=0)
    round_timeout_s: float = Field(default=900.0, gt=0)
    seed: int = 42
    # Since wire 1.2: only devices carrying all these labels take part (drained and revoked
    # devices never do).
    target_labels: dict[str, str] = Field(default_factory=dict)
    # Since wire 1.3: robust training (docs/robust-training.md). The aggregation rule and its
    # parameters:
    aggregation: Aggregation = Field(
        default="fedavg",
        description="fedavg (weighted mean), fedmedian (coordinate-wise median), "
        "fedtrimmedavg (coordinate-wise trimmed mean) or krum (the one update closest to "
        "its neighbours)",
    )
    trimmed_avg_beta: float = Field(
        default=0.2, ge=0, lt=0.5, description="fedtrimmedavg: fraction cut from each tail"
    )
    krum_malicious_devices: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="krum: how many poisoned updates to tolerate (f); its guarantee needs "
        "2f + 3 updates in a round",
    )
    # Screening of updates before aggregation: non-finite updates are always rejected.
    screening_mad_k: float | None = Field(
        default=6.0,
        gt=0,
        le=1e6,
        description="reject updates whose L2 norm exceeds median + k * MAD of the round's "
        "norms (from 3 replies on); null turns this rule off",
    )
    screening_max_norm: float | None = Field(
        default=None, gt=0, le=1e12, description="reject updates with a larger norm"
    )
    # Differential privacy: "central" clips and noises on the coordinator (Gaussian, with
    # an RDP accountant), "local" clips and noises on every device (Flower's LocalDpMod).
    privacy: PrivacyMode = "none"
    dp_clipping_norm: float = Field(
        default=1.0, gt=0, le=1e6, description="L2 bound of each device's update"
    )
    dp_noise_multiplier: float = Field(
        default=1.0,
        gt=0,
        le=1e6,
        description="central: noise std on the sum of updates, in clipping norms",
    )
    dp_epsilon: float = Field(
        default=1.0, gt=0, le=1e6, description="local: epsilon of each device's release per round"
    )
    dp_sensitivity: float | None = Field(
        default=None,
        gt=0,
        le=1e6,
        description="local: L2 sensitivity of a device's update; null: 2 * dp_clipping_norm",
    )
    dp_delta: float = Field(default=1e-5, gt=0, lt=1, description="delta of the reported budget")
    # Since wire 1.3: device selection per round (docs/device-selection.md).
    selection: SelectionPolicy = Field(
        default="capability",
        description="capability (measured speed, history and a round deadline), oort "
        "(Oort's selector) or random (uniform, as Flower)",
    )
    devices_per_round: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="updates aggregated per round (K); null: every eligible device trains",
    )
    overcommit: float = Field(
        default=1.3,
        ge=1,
        le=10,
        description="select ceil(K x overcommit) devices, aggregate the first K updates",
    )
    max_staleness_rounds: int = Field(
        default=20, ge=1, le=10_000, description="capability: no eligible device waits longer"
    )
    min_memory_mb: int = Field(
        default=0, ge=0, le=REGISTRY_INT_MAX, description="only devices with this much memory"
    )
    required_accelerator: Accelerator | None = Field(
        default=None, description="cuda: only devices whose torch can use an NVIDIA GPU"
    )

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in MODEL_NAMES:
            raise ValueError(f"unknown model {value!r}; valid: {', '.join(MODEL_NAMES)}")
        return value

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        if value not in DATASET_NAMES:
            raise ValueError(f"unknown dataset {value!r}; valid: {', '.join(DATASET_NAMES)}")
        return value

    @field_validator("partitioner")
    @classmethod
    def _known_partitioner(cls, value: str) -> str:
        if value not in PARTITIONER_NAMES:
            raise ValueError(
                f"unknown partitioner {value!r}; valid: {', '.join(PARTITIONER_NAMES)}"
            )
        return value

    @field_validator("privacy")
    @classmethod
    def _central_dp_averages(cls, value: str, info: ValidationInfo) -> str:
        # The noise is calibrated to the sensitivity of an unweighted mean (C / n); a
        # median or Krum's pick moves by more when one device changes.
        aggregation = info.data.get("aggregation")
        if value == "central" and aggregation not in (None, "fedavg"):
            raise ValueError(
                f"central differential privacy works with aggregation 'fedavg' only (its noise "
                f"is calibrated to a mean), not {aggregation!r}: use 'fedavg' or privacy "
                "'local'"
            )
        return value


class DeviceRoundResult(WireModel):
    """One device's part in one round."""

    device_id: StoredText = Field(max_length=DEVICE_ID_MAX)
    node_id: int
    num_examples: int = Field(ge=0, le=REGISTRY_INT_MAX)
    # None when the ClientApp sent no finite training loss (a user's own app may send none).
    train_loss: float | None = None
    train_seconds: float


# Why an update was left out of a round's aggregation (docs/robust-training.md):
# non-finite: a NaN or an infinity in its arrays; norm-outlier: its L2 norm (distance from the
# round's global model) was far above the round's median; norm-above-cap: above
# screening_max_norm; malformed: arrays or metrics the aggregation cannot use.
RejectionReason = Literal["non-finite", "norm-outlier", "norm-above-cap", "malformed"]


class RejectedUpdate(WireModel):
    """A device's update that the screening kept out of one round's aggregation."""

    device_id: StoredText = Field(max_length=DEVICE_ID_MAX)
    node_id: int
    reason: RejectionReason
    norm: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="L2 norm of the update; null when it is not finite",
    )
    limit: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="the norm it exceeded (norm-outlier, norm-above-cap)",
    )
    detail: StoredText = Field(default="", max_length=500)


class PrivacySpent(WireModel):
    """The differential-privacy budget a run has spent up to and including one round."""

    mechanism: Literal["central-gaussian", "local-gaussian"]
    epsilon: float = Field(
        allow_inf_nan=False, description="cumulative, at delta, from an RDP accountant"
    )
    delta: float = Field(allow_inf_nan=False)
    releases: int = Field(ge=0, le=REGISTRY_INT_MAX, description="rounds composed so far")
    noise_multiplier: float = Field(
        allow_inf_nan=False, description="noise std / L2 sensitivity of one release"
    )
    clipping_norm: float = Field(allow_inf_nan=False)
    sensitivity: float = Field(
        allow_inf_nan=False, description="the L2 sensitivity the noise is calibrated to"
    )
    sampling_rate: float = Field(
        allow_inf_nan=False,
        description="1.0: every eligible device takes part in every round (no amplification)",
    )
    accountant: StoredText = Field(default="rdp", max_length=32)
    epsilon_per_round: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="local: the per-round epsilon each device's LocalDpMod uses",
    )


class SelectionCandidate(WireModel):
    """A device that may train in a run's next round, with what selection needs to know."""

    device_id: StoredText = Field(max_length=DEVICE_ID_MAX)
    samples_per_s: float | None = None
    memory_bytes: int | None = None
    accelerator: str | None = None
    throttled: bool = False


class SelectionDecision(WireModel):
    """Whether a device was selected for a round, and the deciding factor."""

    device_id: StoredText = Field(max_length=DEVICE_ID_MAX)
    selected: bool
    score: float | None = None
    reason: StoredText = Field(default="", max_length=200)
    predicted_s: float | None = None


class PreviewDecision(SelectionDecision):
    """A selection decision of a preview, with the device's name (since wire 1.4)."""

    name: str = ""


class SelectionPreview(WireModel):
    """Which devices round 1 of a run would select now; nothing is started (since wire 1.4)."""

    policy: str
    devices_per_round: int | None
    eligible: int = Field(description="candidates within the run's hard constraints")
    selected: list[PreviewDecision] = Field(default_factory=list)
    not_selected: list[PreviewDecision] = Field(default_factory=list)
    excluded: list[PreviewDecision] = Field(
        default_factory=list, description="kept out by the run's hard constraints"
    )
    enough: bool = Field(description="eligible reaches the run's min_devices")
    detail: str


class CandidateListing(WireModel):
    """The live, eligible devices of a run, and those its hard constraints keep out."""

    candidates: list[SelectionCandidate] = Field(default_factory=list)
    excluded: list[SelectionDecision] = Field(default_factory=list)


class RoundReport(WireModel):
    """What the ServerApp reports after each round (round 0 is the initial model)."""

    round: int = Field(ge=0, le=REGISTRY_INT_MAX)
    devices: list[DeviceRoundResult] = Field(default_factory=list)
    train_loss: float | None = None
    eval_loss: float | None = None
    eval_accuracy: float | None = None
    # Federated evaluation on the devices' own test shares (when fraction_evaluate > 0).
    federated_eval_loss: float | None = None
    federated_eval_accuracy: float | None = None
    seconds: float = 0.0
    checkpoint: str | None = None
    # Since wire 1.3 (robust training): updates left out of this round, and the privacy
    # budget spent so far.
    rejected_updates: list[RejectedUpdate] = Field(default_factory=list)
    privacy: PrivacySpent | None = None
    # Since wire 1.3: every candidate of the round, selected or not, and why.
    selection: list[SelectionDecision] = Field(default_factory=list)


class RunStatusReport(WireModel):
    """A status change reported by the ServerApp."""

    status: RunStatus
    detail: StoredText = ""


class Run(WireModel):
    """A training run with its per-round metrics."""

    run_id: int
    flower_run_id: int | None
    status: RunStatus
    detail: str
    request: RunRequest
    created_at: datetime
    finished_at: datetime | None
    rounds: list[RoundReport]
    final_accuracy: float | None
    checkpoint: str | None
    # Since wire 1.2.
    attempt: int = 1
    resumed_from_round: int = 0
    stop_requested: bool = False
    app_source: str = "builtin"
    target_labels: dict[str, str] = Field(default_factory=dict)
    selection_policy: str = "fedavg-all"


class ErrorBody(WireModel):
    """The JSON body of every 4xx/5xx answer."""

    error: str
    detail: str


class InvalidRequestBody(ErrorBody):
    """The JSON body of a 422: what is wrong, and the request fields at fault when known."""

    fields: list[str] = Field(
        default_factory=list,
        description="the fields at fault, dotted (`labels.site`); query and path parameters "
        "by name",
    )
