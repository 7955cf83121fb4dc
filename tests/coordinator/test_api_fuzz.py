"""Schemathesis fuzzes the coordinator's REST API against its own OpenAPI spec.

Every generated request, valid or not, must get an answer the spec documents: no 5xx, a status
code the operation lists, the content type it names, and a body that matches its schema.

The app runs as in production on a real SQLite registry and model store, seeded with devices
that heartbeat, finished and pending runs and stored model versions, so that requests hit
existing ids and not only 404s. The SuperLink is intentionally absent: a real ``FlowerControl``
points at a bound port that never listens, so every Control API call is refused at once. Starting,
resuming or stopping a run then answers the documented 503 (the run is recorded as failed) and
no Flower process is ever spawned; ``logs?follow=true`` ends at once instead of streaming.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema_rs
import pytest
import schemathesis
import torch
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.generation.case import Case

from fl_coordinator.api_app import create_app
from fl_coordinator.credentials import CredentialStore
from fl_coordinator.flower_control import FlowerControl
from fl_coordinator.model_store import ModelStore
from fl_coordinator.registry import Registry
from fl_coordinator.routes_runs import AppRunRequest
from fl_coordinator.run_service import RunService
from fl_coordinator.settings import CoordinatorSettings
from fl_shared.capabilities import Capabilities
from fl_shared.models import create_model
from fl_shared.wire import (
    REGISTRY_INT_MAX,
    DeviceAdminAction,
    DeviceLabels,
    DeviceLabelsPatch,
    DeviceRegistration,
    DeviceRoundResult,
    Heartbeat,
    RoundReport,
    RunRequest,
    RunStatusReport,
)

# A background thread that dies (the heartbeat writer) fails the test too.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

DEVICE_IDS = ("dev-fuzz-orin", "dev-fuzz-pi")
# Seeded below: 1 completed (with rounds and stored models), 2 pending, 3 running.
RUN_IDS = (1, 2, 3)
# Per operation and phase: enough to find the cheap mistakes, small enough for well under a
# minute on two cores. FL_TEST_FUZZ_EXAMPLES=500 digs deeper on demand.
MAX_EXAMPLES = int(os.environ.get("FL_TEST_FUZZ_EXAMPLES", "75"))
# The seeded runs' report tokens by run id, filled by `fuzz_app`, so that the ServerApp's
# report routes get past their 403 too.
REPORT_TOKENS: dict[str, str] = {}
# Credentials of the secure app (filled by `fuzz_app`): every request carries the right one,
# and schemathesis' own auth checks send requests without it (they must get 401).
ADMIN_TOKEN: list[str] = []
DEVICE_CREDENTIALS: dict[str, str] = {}


@pytest.fixture(scope="module")
def absent_superlink() -> Iterator[str]:
    """An address whose port is bound (so nobody else takes it) but never listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def _seed(registry: Registry, store: ModelStore) -> None:
    for device_id in DEVICE_IDS:
        registry.register_device(
            DeviceRegistration(device_id=device_id, name=device_id, labels={"site": "lab"})
        )
        registry.record_heartbeat(
            Heartbeat(device_id=device_id, cpu_percent=12.5, max_temp_c=48.0, activity="idle")
        )
    completed, _ = registry.create_run(RunRequest(model="mlp", dataset="fashion-mnist"))
    registry.set_flower_run_id(completed, 101)
    for server_round in (1, 2):
        registry.record_round(
            completed,
            RoundReport(
                round=server_round,
                eval_accuracy=0.5 + server_round / 10,
                devices=[
                    DeviceRoundResult(
                        device_id=DEVICE_IDS[0],
                        node_id=7,
                        num_examples=100,
                        train_loss=0.9,
                        train_seconds=1.5,
                    )
                ],
            ),
        )
    registry.update_run_status(completed, "completed")
    registry.create_run(RunRequest())  # pending: never handed to the SuperLink
    running, _ = registry.create_run(RunRequest(num_rounds=5))
    registry.set_flower_run_id(running, 103)
    registry.mark_run_running(running)
    torch.manual_seed(0)
    state = create_model("mlp").state_dict()
    for server_round, accuracy in ((1, 0.6), (2, 0.7)):
        store.save(
            run_id=completed,
            server_round=server_round,
            architecture="mlp",
            num_classes=10,
            state_dict=state,
            metrics={"eval-accuracy": accuracy, "eval-loss": 1.0},
            dataset="fashion-mnist",
        )


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, absent_superlink: str) -> Iterator[FastAPI]:
    """The coordinator's app on a seeded registry and model store, without a SuperLink."""
    state_dir = tmp_path_factory.mktemp("fuzz")
    # No Fashion-MNIST test set here: an ONNX export answers its documented 503.
    # The production mode: every route but the public ones needs its credential.
    settings_ = CoordinatorSettings(state_dir=state_dir, data_dir=state_dir / "none")
    registry = Registry(settings_.resolved_database_url)
    registry.create_schema()
    control = FlowerControl(absent_superlink, insecure=True)
    store = CredentialStore(registry)
    try:
        _seed(registry, ModelStore(settings_.model_store_dir))
        REPORT_TOKENS.update({str(r): registry.report_token(r) for r in RUN_IDS})
        ADMIN_TOKEN.append(store.create("admin", "fuzz").secret)
        DEVICE_CREDENTIALS.update({d: store.issue_device_credential(d).secret for d in DEVICE_IDS})
        service = RunService(registry, control, settings_)
        yield create_app(registry, service, settings_, credentials=store)
    finally:
        REPORT_TOKENS.clear()
        ADMIN_TOKEN.clear()
        DEVICE_CREDENTIALS.clear()
        control.close()
        registry.close()


def _spec() -> dict[str, Any]:
    """The OpenAPI spec, from an app on an empty in-memory registry.

    The spec depends on the routes alone, not on the state behind them, so requests can go to
    the seeded app of the `fuzz_app` fixture. (Schemathesis' `from_fixture` loader would take
    the spec from that app itself, but it breaks on pytest 9: it sets the removed
    `Item._nodeid`.)
    """
    settings_ = CoordinatorSettings(state_dir=Path("/nonexistent"), insecure=True)
    registry = Registry("sqlite://")
    try:
        service = RunService(registry, None, settings_)  # type: ignore[arg-type]
        return create_app(registry, service, settings_).openapi()
    finally:
        registry.close()


SPEC = _spec()
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            # Its extra requests cannot reach an ASGI app here; test_api_scopes.py sends every
            # operation without, and with each wrong kind of, credential instead.
            "ignored_auth": {"enabled": False},
            # A 503 is no server bug when it is a documented "unavailable" (its status, content
            # type and body are checked as any answer's): the SuperLink and the Fashion-MNIST
            # test set are absent here on purpose. Any other 5xx fails.
            "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]},
            # A schema-valid request may still be refused for what the schema cannot say: 426
            # for an agent of another wire major version (schema_version is any string).
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "403", "404", "409", "426", "503"]
            },
            # A schema-violating request may be refused with a 413 (body limit) or a 426 too.
            "negative_data_rejection": {
                "expected-statuses": [
                    *("400", "401", "403", "404", "405", "406", "409", "413", "415"),
                    *("422", "426", "428", "429", "5xx"),
                ]
            },
        },
        "operations": [
            {
                # GET /api/v1/runs/app is GET /api/v1/runs/{run_id} with the id "app" (a 422
                # that names run_id), so a 405 here rightly allows GET as well as POST.
                "include-path": "/api/v1/runs/app",
                "checks": {
                    "unsupported_method": {"enabled": False},
                    "allow_header_conformance": {"enabled": False},
                    # Whether fab_base64 holds a Flower App Bundle (a zip whose pyproject.toml
                    # Flower accepts) is beyond JSON Schema: InvalidApp answers 422.
                    "positive_data_acceptance": {"expected-statuses": ["2xx", "413", "422", "503"]},
                },
            },
            {
                # Likewise GET /api/v1/runs/preview is GET /api/v1/runs/{run_id} (a 422).
                "include-path": "/api/v1/runs/preview",
                "checks": {
                    "unsupported_method": {"enabled": False},
                    "allow_header_conformance": {"enabled": False},
                },
            },
        ],
    }
)
schema = schemathesis.openapi.from_dict(SPEC, config=CONFIG)

# The request bodies by their schema's name, to read a body as the server does.
BODY_MODELS: dict[str, type[BaseModel]] = {
    model.__name__: model
    for model in (
        AppRunRequest,
        Capabilities,
        DeviceAdminAction,
        DeviceLabels,
        DeviceLabelsPatch,
        DeviceRegistration,
        Heartbeat,
        RoundReport,
        RunRequest,
        RunStatusReport,
    )
}


def _only_coerced(case: Case) -> bool:
    """Whether the server's reading of a schema-violating body conforms to the schema.

    pydantic's lax mode reads JSON `true` as the integer 1 and a number as a Unix time for a
    date-time, and the wire models keep that leniency for agents of other versions. So a body
    may be accepted for its types; what the server read from it must still keep every
    documented constraint (patterns, lengths, enums, bounds).
    """
    body_schema = SPEC["paths"][case.operation.path][case.method.lower()]["requestBody"]
    schema_ = body_schema["content"]["application/json"]["schema"]
    refs = [schema_, *schema_.get("anyOf", [])]
    names = [ref["$ref"].rsplit("/", 1)[-1] for ref in refs if "$ref" in ref]
    if len(names) != 1 or names[0] not in BODY_MODELS:
        return False
    try:
        reading = BODY_MODELS[names[0]].model_validate_json(json.dumps(case.body))
    except (TypeError, ValueError):
        return False
    validator = jsonschema_rs.validator_for({"components": SPEC["components"], **schema_})
    return bool(validator.is_valid(reading.model_dump(mode="json")))


@schema.hook
def filter_failure(_ctx: Any, failure: Any, case: Case, response: schemathesis.Response) -> bool:
    """Drop what breaks no promise of the spec: lax type reading that kept every constraint."""
    if isinstance(failure, AcceptedNegativeData) and "in body" in failure.message:
        return not _only_coerced(case)
    return True


@schema.hook
def flatmap_path_parameters(_ctx: Any, path: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    """Mix the seeded ids in with the generated ones, so that existing resources are hit.

    Only a value that is valid already is swapped: a negative case stays negative.
    """
    options: list[st.SearchStrategy[dict[str, Any] | None]] = [st.just(path)]
    if path is not None and isinstance(path.get("device_id"), str):
        options += [st.just({**path, "device_id": d}) for d in DEVICE_IDS]
    run_id = path.get("run_id") if path is not None else None
    if type(run_id) is int and 1 <= run_id <= REGISTRY_INT_MAX:
        options += [st.just({**path, "run_id": r}) for r in RUN_IDS]  # type: ignore[dict-item]
    return st.one_of(options)


@schema.hook
def map_case(_ctx: Any, case: Case) -> Case:
    """A heartbeat's body repeats the device id of its path (JSON Schema cannot say so)."""
    body, path = case.body, case.path_parameters or {}
    if (
        case.operation.path.endswith("/heartbeat")
        and isinstance(body, dict)
        and isinstance(body.get("device_id"), str)
        and isinstance(path.get("device_id"), str)
    ):
        # Path parameters are kept percent-encoded, as they are sent.
        case.body = {**body, "device_id": unquote(path["device_id"])}
    return case


def _authorize(case: Case) -> None:
    """The admin token, or for a device's own routes that device's credential.

    Set in the test (the tokens exist once `fuzz_app` has run), in place of the value
    schemathesis generated; a case it generated without the header must get 401.
    """
    if "Authorization" not in (case.headers or {}):
        return  # a case generated without it tests that it is required
    operation = case.operation
    device_route = operation.path.endswith(("/heartbeat", "/capabilities")) or (
        operation.path == "/api/v1/devices" and operation.method.upper() == "POST"
    )
    secret = ADMIN_TOKEN[0]
    if device_route:
        path_id = unquote(str((case.path_parameters or {}).get("device_id", "")))
        body_id = case.body.get("device_id") if isinstance(case.body, dict) else None
        secret = DEVICE_CREDENTIALS.get(path_id or str(body_id), "") or secret
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {secret}"}


@schema.hook
def flatmap_case(_ctx: Any, case: Case) -> st.SearchStrategy[Case]:
    """Send a seeded run's real report token in place of the generated one, half the time."""
    token = REPORT_TOKENS.get(str((case.path_parameters or {}).get("run_id")))
    if token is None or not isinstance((case.headers or {}).get("X-Run-Token"), str):
        return st.just(case)

    def with_token(real: bool) -> Case:
        if real:
            case.headers = {**(case.headers or {}), "X-Run-Token": token}
        return case

    return st.booleans().map(with_token)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_answer_is_documented(case: Case, fuzz_app: FastAPI) -> None:
    _authorize(case)
    case.call_and_validate(app=fuzz_app)
