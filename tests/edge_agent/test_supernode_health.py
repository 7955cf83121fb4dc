"""SuperNodeHealth against a real grpcio health server (the one Flower's SuperNode runs)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fl_edge_agent.supernode_health import SERVING, SuperNodeHealth, serving_status
from fl_shared.ports import free_port


@pytest.fixture
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    server.start()
    try:
        yield address, servicer
    finally:
        server.stop(grace=None)


def test_serving_server_is_healthy(health_server: tuple[str, health.HealthServicer]) -> None:
    address, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    client = SuperNodeHealth(address)
    try:
        assert client.check(timeout_s=5)
    finally:
        client.close()


def test_not_serving_server_is_unhealthy(health_server: tuple[str, health.HealthServicer]) -> None:
    address, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    client = SuperNodeHealth(address)
    try:
        assert not client.check(timeout_s=5)
    finally:
        client.close()


def test_nobody_listening_is_unhealthy() -> None:
    client = SuperNodeHealth(f"127.0.0.1:{free_port()}")
    try:
        assert not client.check(timeout_s=1)
    finally:
        client.close()


@pytest.mark.parametrize(
    "status",
    [
        health_pb2.HealthCheckResponse.UNKNOWN,
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
        health_pb2.HealthCheckResponse.SERVICE_UNKNOWN,
    ],
)
def test_decoding_matches_protobuf(status: int) -> None:
    encoded = health_pb2.HealthCheckResponse(status=status).SerializeToString()
    assert serving_status(encoded) == status
    assert (serving_status(encoded) == SERVING) == (
        status == health_pb2.HealthCheckResponse.SERVING
    )


def test_request_encoding_matches_protobuf() -> None:
    from fl_edge_agent.supernode_health import CHECK_ALL_SERVICES

    assert health_pb2.HealthCheckRequest(service="").SerializeToString() == CHECK_ALL_SERVICES


def test_unexpected_wire_types_are_not_serving() -> None:
    assert serving_status(b"\x0a\x01x") == 0  # field 1 as a string: not our message


def test_server_that_comes_up_is_healthy_at_the_next_check() -> None:
    """A SuperNode (re)starting after failed checks is seen at once, not after gRPC's backoff.

    A failed connection puts a gRPC channel into reconnect backoff (1 s, growing 1.6x); calls
    in that window fail without trying. Checks that kept the channel counted a restarted,
    healthy SuperNode as hung and killed it again, in a loop.
    """
    address = f"127.0.0.1:{free_port()}"
    client = SuperNodeHealth(address)
    try:
        for _ in range(3):
            assert not client.check(timeout_s=0.5)
        servicer = health.HealthServicer()
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        server.add_insecure_port(address)
        server.start()
        try:
            assert client.check(timeout_s=0.5)
        finally:
            server.stop(grace=None)
    finally:
        client.close()
