"""The coordinator's REST API as flctl calls it, and flctl's exit codes."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
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

    def __init__(
        self,
        url: str,
        transport: httpx.BaseTransport | None = None,
        *,
        token: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify: ssl.SSLContext | bool = True
        if ca_file:
            try:
                verify = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise CliError(
                    f"cannot use --ca-file {ca_file}: {exc} (give the coordinator's ca.crt)",
                    EXIT_USAGE,
                ) from exc
        self._client = httpx.Client(
            base_url=self.url, timeout=30.0, transport=transport, headers=headers, verify=verify
        )

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One JSON request; CliError with the server's detail on failure."""
        try:
            response = self._client.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        self._check(response)
        return response.json()

    def stream_text(self, path: str, params: dict[str, Any] | None = None) -> Iterator[str]:
        """A text body chunk by chunk as the server sends it (e.g. a live log)."""
        try:
            with self._client.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    self._check(response)
                yield from response.iter_text()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def download(self, path: str, write: Callable[[bytes], object]) -> httpx.Headers:
        """Stream a binary body chunk by chunk to ``write`` (no time limit: exports are slow)."""
        try:
            with self._client.stream("GET", path, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    self._check(response)
                for chunk in response.iter_bytes():
                    write(chunk)
                return response.headers
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: Exception) -> CliError:
        return CliError(
            f"cannot reach the coordinator at {self.url} ({exc}): is `fl-coordinator serve` "
            "running? pass --url or set FLCTL_URL",
            EXIT_UNREACHABLE,
        )

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        code = EXIT_USAGE if response.status_code < 500 else EXIT_FAILURE
        raise CliError(f"{response.status_code}: {detail}", code)
