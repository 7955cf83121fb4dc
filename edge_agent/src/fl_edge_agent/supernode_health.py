"""SuperNodeHealth: asks the SuperNode's gRPC health server whether it still answers."""

from __future__ import annotations

import grpc

# grpc.health.v1.Health/Check (grpc/health/v1/health.proto). The two messages are tiny, so
# they are encoded here: the protobuf modules of grpcio-health-checking would add ~2.4 MB to
# the daemon's RSS for them.
CHECK_METHOD = "/grpc.health.v1.Health/Check"
CHECK_ALL_SERVICES = b""  # HealthCheckRequest(service="")
SERVING = 1  # HealthCheckResponse.ServingStatus.SERVING


def serving_status(response: bytes) -> int:
    """The ``status`` (field 1, a varint) of a serialized HealthCheckResponse; 0 if absent."""
    status, i = 0, 0
    while i < len(response):
        key = response[i]
        i += 1
        value, shift = 0, 0
        while i < len(response):  # every field of this message is a varint
            byte = response[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if key >> 3 == 1 and key & 0x07 == 0:
            status = value
        elif key & 0x07 != 0:
            return 0  # not the message we know: treat as not serving
    return status


class SuperNodeHealth:
    """A grpcio client of Flower's health server on 127.0.0.1 (``--health-server-address``).

    A SuperNode that is alive answers SERVING; a hung (stopped, deadlocked) one times out.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel: grpc.Channel | None = None

    def check(self, timeout_s: float = 2.0) -> bool:
        """True when the SuperNode answers SERVING within the timeout."""
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.address)
        call = self._channel.unary_unary(CHECK_METHOD)  # bytes in, bytes out
        try:
            reply = call(CHECK_ALL_SERVICES, timeout=timeout_s)
        except grpc.RpcError:
            # A failed channel sits in reconnect backoff and fails calls without trying: a
            # SuperNode that has just (re)started would be judged hung. Next check: new channel.
            self.close()
            return False
        return serving_status(bytes(reply)) == SERVING

    def close(self) -> None:
        """Close the channel (a new one opens on the next check)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
