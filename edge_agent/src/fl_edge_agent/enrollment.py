"""Enrollment: `fl-edge-agent enroll` trades a one-time token for a device identity.

It decides how to trust the coordinator (a pinned CA fingerprint, a CA file or the system's
store), generates the SuperNode's key, sends ``POST /api/v1/enroll`` and keeps the answer in
``<state_dir>/identity/`` (see :mod:`fl_edge_agent.enrolled_identity`). Only this command
imports `cryptography`; the daemon reads the files it leaves.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx
from pydantic import ValidationError

from fl_edge_agent.agent_status import read_status
from fl_edge_agent.ca_fingerprint import CaFingerprint, certificate_der
from fl_edge_agent.device_registration import build_registration
from fl_edge_agent.enrolled_identity import EnrollmentRecord, IdentityFiles
from fl_edge_agent.errors import (
    EXIT_OK,
    AgentConfigError,
    AlreadyEnrolled,
    CoordinatorRejected,
    CoordinatorUnreachable,
    EnrollmentRefused,
    FlAgentError,
    UntrustedCoordinator,
)
from fl_edge_agent.settings import AgentSettings
from fl_edge_agent.supernode_key import SuperNodeKey
from fl_shared.atomic_write import atomic_write_bytes
from fl_shared.enrollment_wire import EnrollmentGranted, EnrollmentRequest
from fl_shared.wire import DeviceRegistration

CA_PATH = "/api/v1/ca.crt"
ENROLL_PATH = "/api/v1/enroll"
MAX_CA_BYTES = 64 * 1024
TRUST_HINT = (
    "pass --ca-fingerprint with the CA fingerprint your fleet administrator gives you, "
    "or --ca-file with the coordinator's CA certificate"
)
NEW_ENROLLMENT_HINT = (
    "ask the fleet administrator for a new enrollment token (each works once, then expires)"
)


@dataclass(frozen=True)
class CoordinatorTrust:
    """How the coordinator's TLS is verified during enrollment, and the CA that says so."""

    source: Literal["fingerprint", "file", "system", "none"]
    verify: ssl.SSLContext | None  # None: plain HTTP (--insecure-dev)
    ca_pem: bytes | None = None  # the pinned or given CA, kept for the daemon


class Enrollment:
    """One enrollment of this device with the coordinator at ``coordinator_url``."""

    def __init__(
        self,
        coordinator_url: str,
        files: IdentityFiles,
        *,
        insecure_dev: bool = False,
        timeout_s: float = 30.0,
    ) -> None:
        url = coordinator_url.strip().rstrip("/")
        if not url.startswith(("https://", "http://")):
            raise AgentConfigError(
                f"--coordinator {coordinator_url!r} must be a URL: https://HOST[:PORT]"
            )
        if url.startswith("http://") and not insecure_dev:
            raise AgentConfigError(
                f"--coordinator {url} is plain HTTP: the token and the device credential would "
                "travel in clear; use https:// (or, on a trusted development network only, add "
                "--insecure-dev)"
            )
        self.url = url
        self.files = files
        self._timeout_s = timeout_s

    @property
    def plain_http(self) -> bool:
        """True for an http:// coordinator (allowed with --insecure-dev only)."""
        return self.url.startswith("http://")

    def check_not_enrolled(self, force: bool) -> None:
        """AlreadyEnrolled when an identity exists here and ``force`` is not given."""
        if force or not self.files.exists():
            return
        try:
            record = EnrollmentRecord.model_validate_json(self.files.record.read_bytes())
            who = (
                f"as device {record.device_id} (node {record.node_id}) at {record.coordinator_url}"
            )
        except (OSError, ValueError):
            who = f"(damaged identity in {self.files.dir})"
        raise AlreadyEnrolled(
            f"this device is already enrolled {who}; to replace that identity with a new key "
            "and a new token, stop the agent and run enroll again with --force"
        )

    def trust(self, fingerprint: CaFingerprint | None, ca_file: Path | None) -> CoordinatorTrust:
        """Decide how to verify the coordinator: a pinned CA, a CA file, or the system store."""
        if ca_file is not None:
            try:
                pem = ca_file.read_bytes()
            except OSError as exc:
                raise AgentConfigError(f"cannot read --ca-file {ca_file}: {exc.strerror}") from exc
            if b"-----BEGIN CERTIFICATE-----" not in pem:
                raise AgentConfigError(f"--ca-file {ca_file} holds no PEM certificate")
            if fingerprint is not None:
                _check_fingerprint(fingerprint, CaFingerprint.of_pem(pem, str(ca_file)), ca_file)
            return CoordinatorTrust("file", None if self.plain_http else _context(pem), pem)
        if fingerprint is not None:
            pem = self._download_ca()
            _check_fingerprint(fingerprint, CaFingerprint.of_pem(pem, self.url + CA_PATH), None)
            return CoordinatorTrust("fingerprint", None if self.plain_http else _context(pem), pem)
        if self.plain_http:
            return CoordinatorTrust("none", None)
        return CoordinatorTrust("system", ssl.create_default_context())

    def enroll(
        self, token: str, registration: DeviceRegistration, trust: CoordinatorTrust
    ) -> EnrollmentRecord:
        """Generate a key, enroll with it and keep the identity; returns what was recorded.

        Nothing under identity/ changes unless the coordinator says yes, so a failed
        ``--force`` leaves the old identity working.
        """
        self._prepare_dir()  # fail on an unwritable state dir before the token is spent
        key = SuperNodeKey.generate(comment=registration.name)
        request = EnrollmentRequest(
            enrollment_token=token, public_key=key.public_openssh, registration=registration
        )
        response = self._call("POST", ENROLL_PATH, trust, content=request.model_dump_json())
        granted = _granted(response)
        certificate_der(granted.ca_certificate.encode(), "the enrollment answer's ca_certificate")
        return self._save(key, granted, trust)

    def _download_ca(self) -> bytes:
        # Unverified on purpose: the fingerprint check that follows is what makes it trusted.
        url = self.url + CA_PATH
        try:
            with (
                httpx.Client(verify=False, timeout=self._timeout_s) as client,  # noqa: S501
                client.stream("GET", url) as response,
            ):
                if response.status_code != 200:
                    raise CoordinatorRejected(
                        f"GET {url} answered {response.status_code}: is --coordinator the "
                        "coordinator's URL, and does it serve its CA there?"
                    )
                pem = b""
                for chunk in response.iter_bytes():
                    pem += chunk
                    if len(pem) > MAX_CA_BYTES:
                        raise UntrustedCoordinator(f"{url} sent more than a CA certificate")
                return pem
        except httpx.TransportError as exc:
            raise _transport_error(self.url, exc) from exc

    def _call(
        self, method: str, path: str, trust: CoordinatorTrust, *, content: str
    ) -> httpx.Response:
        verify: ssl.SSLContext | bool = trust.verify if trust.verify is not None else False
        try:
            with httpx.Client(base_url=self.url, verify=verify, timeout=self._timeout_s) as client:
                response = client.request(
                    method, path, content=content, headers={"Content-Type": "application/json"}
                )
        except httpx.TransportError as exc:
            raise _transport_error(self.url, exc) from exc
        if response.status_code >= 500:
            raise CoordinatorUnreachable(
                f"the coordinator at {self.url} answered {response.status_code}: "
                "try again later (its logs say why)"
            )
        if response.status_code in (401, 403):
            detail = _detail(response)
            raise EnrollmentRefused(
                f"the coordinator refused the enrollment token ({response.status_code}): "
                f"{detail or NEW_ENROLLMENT_HINT}"
            )
        if response.status_code == 404:
            raise CoordinatorRejected(
                f"{self.url}{path} does not exist (404): --coordinator must be the coordinator's "
                "base URL, and the coordinator must be new enough to enroll devices"
            )
        if response.status_code >= 400:
            raise CoordinatorRejected(
                f"the coordinator refused the enrollment ({response.status_code}): "
                f"{_detail(response)}"
            )
        return response

    def _prepare_dir(self) -> None:
        try:
            self.files.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.files.dir, 0o700)
            probe = self.files.dir / ".writable"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise AgentConfigError(
                f"cannot write {self.files.dir}: {exc.strerror} (run enroll as the agent's user "
                "or as root, with the agent's --state-dir / --config)"
            ) from exc

    def _save(
        self, key: SuperNodeKey, granted: EnrollmentGranted, trust: CoordinatorTrust
    ) -> EnrollmentRecord:
        files = self.files
        ca_pem = granted.ca_certificate.encode()
        coordinator_ca: str | None = files.ca.name
        if trust.source == "system":
            coordinator_ca = None
        elif trust.ca_pem is not None and not _same_single_certificate(trust.ca_pem, ca_pem):
            # The CA that verified the coordinator is not the Fleet API's: keep both.
            atomic_write_bytes(files.coordinator_ca, trust.ca_pem, mode=0o644)
            coordinator_ca = files.coordinator_ca.name
        record = EnrollmentRecord(
            device_id=granted.device_id,
            node_id=granted.node_id,
            coordinator_url=self.url,
            superlink_address=granted.superlink_address,
            enrolled_at=datetime.now(UTC),
            coordinator_ca_file=coordinator_ca,
        )
        atomic_write_bytes(files.private_key, key.private_openssh, mode=0o600)
        atomic_write_bytes(files.public_key, (key.public_openssh + "\n").encode(), mode=0o644)
        atomic_write_bytes(files.ca, ca_pem, mode=0o644)
        atomic_write_bytes(files.credential, (granted.device_credential + "\n").encode(), 0o600)
        if coordinator_ca != files.coordinator_ca.name:
            files.coordinator_ca.unlink(missing_ok=True)
        # Last: its presence is what "enrolled" means to the daemon and to the next enroll.
        atomic_write_bytes(files.record, record.model_dump_json(indent=2).encode(), mode=0o644)
        _hand_over(files)
        return record


def _context(pem: bytes) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cadata=pem.decode("ascii", errors="replace"))
    except ssl.SSLError as exc:
        raise UntrustedCoordinator(f"the CA certificate cannot be loaded: {exc}") from exc


def _check_fingerprint(expected: CaFingerprint, got: CaFingerprint, ca_file: Path | None) -> None:
    if expected == got:
        return
    where = f"--ca-file {ca_file}" if ca_file else "the coordinator's CA"
    raise UntrustedCoordinator(
        f"{where} does not match --ca-fingerprint: expected {expected}, got {got}; check the "
        "fingerprint with your fleet administrator (a mismatch can mean someone is in between)"
    )


def _same_single_certificate(a: bytes, b: bytes) -> bool:
    marker = b"-----BEGIN CERTIFICATE-----"
    if a.count(marker) != 1 or b.count(marker) != 1:
        return False
    try:
        return certificate_der(a, "CA") == certificate_der(b, "CA")
    except UntrustedCoordinator:
        return False


def _transport_error(url: str, exc: httpx.TransportError) -> FlAgentError:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return UntrustedCoordinator(
                f"the coordinator at {url} has a TLS certificate this device does not trust "
                f"({cause.verify_message}): {TRUST_HINT}"
            )
        cause = cause.__cause__ or cause.__context__
    return CoordinatorUnreachable(
        f"cannot reach the coordinator at {url} ({exc or type(exc).__name__}): check "
        "--coordinator, DNS and the network, then run enroll again"
    )


def _granted(response: httpx.Response) -> EnrollmentGranted:
    problem: str | None
    try:
        granted = EnrollmentGranted.model_validate_json(response.content)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        problem = f"{where}: {first['msg']}"
    else:
        problem = _unusable(granted)
        if problem is None:
            return granted
    raise CoordinatorRejected(
        f"{response.url} answered {response.status_code} with an unusable enrollment "
        f"({problem}): is --coordinator the coordinator's URL?"
    )


def _unusable(granted: EnrollmentGranted) -> str | None:
    """What in the answer this agent cannot use, or None."""
    credential = granted.device_credential
    # It becomes an Authorization header and a one-line file.
    if not credential or not credential.isprintable() or any(c.isspace() for c in credential):
        return "device_credential: must be one printable word"
    if not granted.device_id:
        return "device_id: empty"
    # flower-supernode --superlink wants host:port, no scheme.
    host, sep, port = granted.superlink_address.rpartition(":")
    if "://" in granted.superlink_address or not sep or not host or not port.isdigit():
        return f"superlink_address {granted.superlink_address!r}: must be host:port"
    return None


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(data, dict):
        return str(data.get("detail") or data.get("error") or "")
    return response.text.strip()[:300]


def _hand_over(files: IdentityFiles) -> None:
    """Run as root: give the identity to the state directory's owner (the agent's user)."""
    if os.geteuid() != 0:
        return
    owner = files.dir.parent.stat()
    if owner.st_uid == 0:
        return
    for path in (files.dir, *sorted(files.dir.iterdir())):
        os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)


def _read_token(value: str) -> str:
    token = sys.stdin.readline() if value == "-" else value
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise AgentConfigError("--token is empty or has spaces: paste the token exactly")
    return token


def enroll_main(args: argparse.Namespace, settings: AgentSettings) -> int:
    """`fl-edge-agent enroll`: prints one line; FlAgentError carries the exit code otherwise."""
    fingerprint = CaFingerprint.parse(args.ca_fingerprint) if args.ca_fingerprint else None
    enrollment = Enrollment(
        args.coordinator, IdentityFiles(settings.state_dir), insecure_dev=args.insecure_dev
    )
    enrollment.check_not_enrolled(args.force)
    token = _read_token(args.token)
    if enrollment.plain_http:
        print(
            "fl-edge-agent: warning: --insecure-dev: enrolling over plain HTTP; the token and "
            "the device credential travel in clear (development only)",
            file=sys.stderr,
        )
    trust = enrollment.trust(fingerprint, args.ca_file)
    record = enrollment.enroll(token, build_registration(settings, None), trust)
    print(
        f"enrolled device {record.device_id} as node {record.node_id} at "
        f"{record.coordinator_url} (identity in {enrollment.files.dir})"
    )
    try:
        status = read_status(settings.state_dir)
    except PermissionError:
        status = None
    if status is not None and status.is_live() and status.state == "waiting_for_enrollment":
        print(f"the agent running as pid {status.pid} picks this identity up within seconds")
    elif status is not None and status.is_live():
        print(
            f"fl-edge-agent: the agent running as pid {status.pid} still uses the old "
            "identity: restart it (systemctl restart fl-edge-agent)",
            file=sys.stderr,
        )
    return EXIT_OK
