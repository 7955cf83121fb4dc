"""Robust-training options through the REST API, and rejections shown by the API and flctl."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.coordinator.api_harness import FakeControl, api_harness

from fl_coordinator.flctl import Api, execute
from fl_coordinator.flctl import _parser as flctl_parser
from fl_coordinator.registry import Registry
from fl_shared.wire import PrivacySpent, RejectedUpdate, RoundReport


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[TestClient, Registry, FakeControl]]:
    control = FakeControl()
    with api_harness(tmp_path, control) as harness:
        yield harness.client, harness.registry, control


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"aggregation": "median"}, "aggregation", "'fedmedian'"),
        ({"aggregation": "fedtrimmedavg", "trimmed_avg_beta": 0.5}, "trimmed_avg_beta", "0.5"),
        ({"privacy": "central", "aggregation": "fedmedian"}, "privacy", "'fedavg' only"),
        ({"privacy": "secret"}, "privacy", "'local'"),
        ({"screening_mad_k": 0}, "screening_mad_k", "greater than 0"),
        ({"dp_delta": 1.5}, "dp_delta", "less than 1"),
    ],
)
def test_bad_robust_training_options_are_422_naming_the_field(
    env: Any, body: dict[str, Any], field: str, says: str
) -> None:
    client, _, control = env
    answer = client.post("/api/v1/runs", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["fields"] == [field]
    assert says in answer.json()["detail"]
    assert control.configs == []  # nothing reached the SuperLink


def test_the_spec_says_central_dp_needs_fedavg(env: Any) -> None:
    client, _, _ = env
    schema = client.get("/openapi.json").json()["components"]["schemas"]["RunRequest"]
    assert schema["if"] == {
        "properties": {"privacy": {"const": "central"}},
        "required": ["privacy"],
    }
    assert schema["then"] == {"properties": {"aggregation": {"const": "fedavg"}}}
    assert schema["properties"]["aggregation"]["enum"] == [
        "fedavg",
        "fedmedian",
        "fedtrimmedavg",
        "krum",
    ]


def test_the_options_are_kept_with_the_run_and_reach_the_run_config(env: Any) -> None:
    client, registry, control = env
    body = {
        "aggregation": "krum",
        "min_devices": 5,
        "krum_malicious_devices": 1,
        "screening_max_norm": 20.0,
        "privacy": "local",
        "dp_epsilon": 3.0,
    }
    answer = client.post("/api/v1/runs", json=body)
    assert answer.status_code == 201, answer.text
    request = answer.json()["request"]
    assert {k: request[k] for k in body} == body
    assert request["screening_mad_k"] == 6.0 and request["dp_sensitivity"] is None
    (config,) = control.configs
    assert (config["aggregation"], config["krum-malicious-devices"]) == ("krum", 1)
    assert (config["privacy"], config["dp-epsilon"], config["dp-sensitivity"]) == (
        "local",
        3.0,
        2.0,
    )
    assert registry.get_run(answer.json()["run_id"]).request.aggregation == "krum"


def _flctl(client: TestClient, *argv: str) -> str:
    def handler(request: httpx.Request) -> httpx.Response:
        answer = client.request(
            request.method, request.url.raw_path.decode(), content=request.content
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    out = io.StringIO()
    args = flctl_parser().parse_args(list(argv))
    assert (
        execute(args, Api("http://coordinator", transport=httpx.MockTransport(handler)), out) == 0
    )
    return out.getvalue()


def test_rejected_updates_and_the_budget_show_in_the_run_and_in_flctl(env: Any) -> None:
    client, registry, _ = env
    run_id = client.post("/api/v1/runs", json={"privacy": "central"}).json()["run_id"]
    token = {"X-Run-Token": registry.report_token(run_id)}
    privacy = PrivacySpent(
        mechanism="central-gaussian",
        epsilon=4.75,
        delta=1e-5,
        releases=1,
        noise_multiplier=1.0,
        clipping_norm=1.0,
        sensitivity=1.0,
        sampling_rate=1.0,
    )
    report = RoundReport(
        round=1,
        rejected_updates=[
            RejectedUpdate(
                device_id="dev-x",
                node_id=77,
                reason="non-finite",
                detail="array 'fc.weight' holds NaN or infinity",
            ),
            RejectedUpdate(
                device_id="dev-y", node_id=78, reason="norm-outlier", norm=53.2, limit=4.1
            ),
        ],
        privacy=privacy,
    )
    posted = client.post(
        f"/api/v1/runs/{run_id}/rounds", json=report.model_dump(mode="json"), headers=token
    )
    assert posted.status_code == 204, posted.text
    # An older ServerApp's report, without the new fields, is still taken.
    older = client.post(f"/api/v1/runs/{run_id}/rounds", json={"round": 0}, headers=token)
    assert older.status_code == 204

    rounds = {r["round"]: r for r in client.get(f"/api/v1/runs/{run_id}").json()["rounds"]}
    assert rounds[0]["rejected_updates"] == [] and rounds[0]["privacy"] is None
    assert rounds[1]["rejected_updates"] == [
        {
            "device_id": "dev-x",
            "node_id": 77,
            "reason": "non-finite",
            "norm": None,
            "limit": None,
            "detail": "array 'fc.weight' holds NaN or infinity",
        },
        {
            "device_id": "dev-y",
            "node_id": 78,
            "reason": "norm-outlier",
            "norm": 53.2,
            "limit": 4.1,
            "detail": "",
        },
    ]
    assert rounds[1]["privacy"]["epsilon"] == 4.75

    shown = _flctl(client, "runs", "show", str(run_id))
    assert "rejected updates:" in shown
    assert "round 1: dev-x (node 77) non-finite: array 'fc.weight' holds NaN" in shown
    assert "round 1: dev-y (node 78) norm-outlier" in shown
    assert "privacy: central-gaussian, epsilon 4.75 at delta 1e-05 after 1 rounds" in shown
