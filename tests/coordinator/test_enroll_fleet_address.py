"""Which Fleet API address an enrolling device is told: the name it reached the API by."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.requests import Request

from fl_coordinator.routes_enroll import _fleet_address_for
from fl_coordinator.settings import CoordinatorSettings


def _request(host_header: str) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "https",
        "path": "/api/v1/enroll",
        "query_string": b"",
        "headers": [(b"host", host_header.encode())],
        "server": ("10.0.0.1", 8080),
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("host_header", "told"),
    [
        ("coord.example.org:8080", "coord.example.org:9092"),
        ("10.200.0.1:8080", "10.200.0.1:9092"),
        ("[fd00::1]:8080", "[fd00::1]:9092"),
    ],
)
def test_a_gateway_on_every_address_is_reached_by_the_name_the_device_used(
    tmp_path: Path, host_header: str, told: str
) -> None:
    settings = CoordinatorSettings(state_dir=tmp_path, host="0.0.0.0", fleet_port=9092)
    assert _fleet_address_for(_request(host_header), settings) == told


def test_a_configured_fleet_address_or_gateway_host_wins(tmp_path: Path) -> None:
    configured = CoordinatorSettings(
        state_dir=tmp_path, host="0.0.0.0", fleet_address="fleet.example:443"
    )
    assert _fleet_address_for(_request("10.0.0.1:8080"), configured) == "fleet.example:443"
    bound = CoordinatorSettings(state_dir=tmp_path, host="10.0.0.1", fleet_port=9092)
    assert _fleet_address_for(_request("alias.example:8080"), bound) == "10.0.0.1:9092"
