"""FlowerControl: submits and inspects runs through the SuperLink's Control API."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import tomli_w
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.cli.build import build_fab_from_files
from flwr.common.serde import fab_to_proto, run_status_from_proto, user_config_to_proto
from flwr.proto.control_pb2 import (  # pylint: disable=no-name-in-module
    ListRunsRequest,
    RegisterNodeRequest,
    StartRunRequest,
    StopRunRequest,
    StreamLogsRequest,
    UnregisterNodeRequest,
)
from flwr.supercore.control import ControlHttpClient
from flwr.supercore.fab import Fab

from fl_coordinator.errors import SuperLinkUnreachable

_NIST_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

APP_NAME = "fl-fleet"
APP_PUBLISHER = "flfleet"
SERVERAPP_REF = "fl_coordinator.server_app:app"
# The ClientApp lives in the agent's distribution, installed on every device.
CLIENTAPP_REF = "fl_edge_agent.client_app:app"


@dataclass(frozen=True)
class FlowerRunState:
    """What the SuperLink says about one run."""

    status: str
    sub_status: str
    details: str


def build_fab(run_config: dict[str, Any], version: str = "0.1.0") -> bytes:
    """Build the Flower App Bundle for a run: a pyproject naming our installed components.

    The run's whole configuration is the app's default config, so no override can name a
    key the app does not know.
    """
    pyproject = {
        "build-system": {"requires": ["setuptools"], "build-backend": "setuptools.build_meta"},
        "project": {"name": APP_NAME, "version": version, "dependencies": []},
        "tool": {
            "flwr": {
                "app": {
                    "publisher": APP_PUBLISHER,
                    "components": {"serverapp": SERVERAPP_REF, "clientapp": CLIENTAPP_REF},
                    "config": run_config,
                }
            }
        },
    }
    fab, _meta = build_fab_from_files({"pyproject.toml": tomli_w.dumps(pyproject).encode()})
    return fab


class NodeKeyRefused(ValueError):
    """A SuperNode public key that cannot be registered."""


def node_key_pem(openssh_line: str) -> bytes:
    """The PEM form the Control API wants of a SuperNode's OpenSSH public key line."""
    try:
        key = serialization.load_ssh_public_key(openssh_line.strip().encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise NodeKeyRefused(f"public_key is not an OpenSSH public key line: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _NIST_CURVES:
        raise NodeKeyRefused(
            "public_key must be a NIST elliptic-curve key (ssh-keygen -t ecdsa -b 384); "
            f"got {type(key).__name__}"
        )
    return key.public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )


class FlowerControl:
    """A Control API client for one SuperLink (loopback only: that API has no auth)."""

    def __init__(self, address: str, *, insecure: bool, root_certificates: str | None = None):
        self._client = ControlHttpClient.from_server_address(
            address, insecure, None if insecure else root_certificates, ()
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def start_run(self, run_config: dict[str, Any]) -> int:
        """Submit a run of our own app; returns Flower's run id."""
        return self.start_fab(build_fab(run_config))

    def start_fab(self, fab_bytes: bytes, override_config: dict[str, Any] | None = None) -> int:
        """Submit a run of any Flower App Bundle (a user's own app); returns Flower's run id."""
        fab = Fab(hashlib.sha256(fab_bytes).hexdigest(), fab_bytes, {})
        request = StartRunRequest(
            fab=fab_to_proto(fab),
            override_config=user_config_to_proto(override_config or {}),
            federation="",
        )
        try:
            response = self._client.StartRun(request)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise SuperLinkUnreachable(f"SuperLink Control API unreachable: {exc}") from exc
        if not response.HasField("run_id"):
            raise SuperLinkUnreachable("SuperLink refused to start the run")
        return int(response.run_id)

    def run_state(self, flower_run_id: int) -> FlowerRunState | None:
        """The run's status at the SuperLink, or None if it does not know the run."""
        try:
            response = self._client.ListRuns(ListRunsRequest(run_id=flower_run_id))
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise SuperLinkUnreachable(f"SuperLink Control API unreachable: {exc}") from exc
        run = response.run_dict.get(flower_run_id)
        if run is None:
            return None
        status = run_status_from_proto(run.status)
        return FlowerRunState(status.status, status.sub_status, status.details)

    def stop_run(self, flower_run_id: int) -> None:
        """Ask the SuperLink to stop a run."""
        try:
            self._client.StopRun(StopRunRequest(run_id=flower_run_id))
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise SuperLinkUnreachable(f"SuperLink Control API unreachable: {exc}") from exc

    def register_node(self, public_key: str, name: str = "") -> int:
        """Register a SuperNode's public key (an OpenSSH line); returns its Flower node id.

        NodeKeyRefused if the key is not a NIST elliptic-curve key or the SuperLink refuses it
        (a key it has seen before is refused for good).
        """
        request = RegisterNodeRequest(public_key=node_key_pem(public_key), name=name[:64])
        try:
            response = self._client.RegisterNode(request)
        except httpx.HTTPStatusError as exc:
            raise NodeKeyRefused(
                f"the SuperLink refused the device's key ({exc.response.status_code}): a key "
                "can be registered once; the agent makes a new one with `fl-edge-agent enroll "
                "--force`"
            ) from exc
        except (httpx.HTTPError, OSError) as exc:
            raise SuperLinkUnreachable(f"SuperLink Control API unreachable: {exc}") from exc
        if not response.node_id:
            raise NodeKeyRefused("the SuperLink gave the device's key no node id")
        return int(response.node_id)

    def unregister_node(self, node_id: int) -> None:
        """Unregister a node: its SuperNode is refused from now on and exits."""
        try:
            self._client.UnregisterNode(UnregisterNodeRequest(node_id=node_id))
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise SuperLinkUnreachable(f"SuperLink Control API unreachable: {exc}") from exc

    def stream_logs(
        self, flower_run_id: int, *, after: float = 0.0, follow: bool = False
    ) -> Iterator[str]:
        """The run's ServerApp log as the SuperLink keeps it, without terminal colours.

        Without ``follow`` only what is there now; with it, new output as it comes until
        the run ends (the SuperLink closes the stream then).
        """
        request = StreamLogsRequest(run_id=flower_run_id, after_timestamp=after)
        try:
            for response in self._client.StreamLogs(request):
                yield _ANSI.sub("", response.log_output)
                if not follow:
                    return
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise SuperLinkUnreachable(f"SuperLink Control API unreachable: {exc}") from exc
