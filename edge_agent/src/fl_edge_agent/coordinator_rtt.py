"""Round-trip time to the coordinator: the median of a few GETs of its /healthz."""

from __future__ import annotations

import ssl
import statistics
import time
from collections.abc import Callable

import httpx


def measure_coordinator_rtt(
    coordinator_url: str,
    tries: int = 3,
    timeout_s: float = 1.0,
    transport: httpx.BaseTransport | None = None,
    clock: Callable[[], float] = time.perf_counter,
    verify: ssl.SSLContext | None = None,
) -> float:
    """Median milliseconds of ``tries`` GETs; raises httpx.HTTPError when none succeeds.

    ``verify``: the TLS context for an https:// coordinator (an enrolled device's CA).
    """
    url = coordinator_url.rstrip("/") + "/healthz"
    samples: list[float] = []
    last_error: httpx.HTTPError | None = None
    tls: ssl.SSLContext | bool = verify if verify is not None else True
    with httpx.Client(timeout=timeout_s, transport=transport, verify=tls) as client:
        for _ in range(tries):
            start = clock()
            try:
                client.get(url).raise_for_status()
            except httpx.HTTPError as exc:
                last_error = exc
                continue
            samples.append((clock() - start) * 1000.0)
    if not samples:
        assert last_error is not None
        raise last_error
    return statistics.median(samples)
