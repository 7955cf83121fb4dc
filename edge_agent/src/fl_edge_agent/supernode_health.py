"""SuperNodeHealth: asks the SuperNode's gRPC health server whether it still answers."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


class SuperNodeHealth:
    """A client of Flower's health server on 127.0.0.1 (``--health-server-address``).

    A SuperNode that is alive answers SERVING; a hung (stopped, deadlocked) one times out.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel: grpc.Channel | None = None

    def check(self, timeout_s: float = 2.0) -> bool:
        """True when the SuperNode answers SERVING within the timeout."""
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.address)
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def close(self) -> None:
        """Close the channel (a new one opens on the next check)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
