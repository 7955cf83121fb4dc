"""The coordinator's REST API as flctl calls it, and flctl's exit codes."""

from __future__ import annotations

from typing import Any

import httpx

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class CliError(Exception):
    """One line for stderr and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Api:
    """The few REST calls flctl makes."""

    def __init__(self, url: str, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=30.0, transport=transport)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise CliError(
                f"cannot reach the coordinator at {self.url} ({exc}): is `fl-coordinator serve` "
                "running? pass --url or set FLCTL_URL",
                EXIT_UNREACHABLE,
            ) from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            code = EXIT_USAGE if response.status_code < 500 else EXIT_FAILURE
            raise CliError(f"{response.status_code}: {detail}", code)
        return response.json()
