"""A small coordinator over real TLS for enrollment tests: CA, enroll, device calls with 401s.

It speaks the enrollment contract (GET /api/v1/ca.crt, POST /api/v1/enroll, Bearer device
credentials on the device routes) and nothing else; uvicorn serves it in a thread.
"""

from __future__ import annotations

import hashlib
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse


@dataclass(frozen=True)
class FleetPki:
    """A CA and a server certificate for 127.0.0.1 and localhost, as PEM files."""

    ca_pem: bytes
    ca_file: Path
    cert_file: Path
    key_file: Path

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the CA's DER, colon-separated upper-case hex."""
        der = x509.load_pem_x509_certificate(self.ca_pem).public_bytes(serialization.Encoding.DER)
        return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def make_pki(directory: Path, name: str = "Test Fleet CA") -> FleetPki:
    """A fresh CA (EC P-256) and a server certificate signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coordinator")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    pki = FleetPki(
        ca_pem=ca_pem,
        ca_file=directory / "ca.crt",
        cert_file=directory / "server.crt",
        key_file=directory / "server.key",
    )
    pki.ca_file.write_bytes(ca_pem)
    pki.cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


@dataclass
class FakeCoordinatorState:
    """What the fake knows and what it was sent; tests read and change it."""

    ca_pem: bytes
    tokens: set[str] = field(default_factory=set)
    credentials: dict[str, str] = field(default_factory=dict)  # secret -> device id
    enrollments: list[dict[str, Any]] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    superlink_address: str = "127.0.0.1:9"
    fail_enroll_with: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def revoke_all(self) -> None:
        """Every device credential stops working (what revoking or re-enrolling does)."""
        with self.lock:
            self.credentials.clear()


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def build_app(state: FakeCoordinatorState) -> FastAPI:
    """The coordinator routes the agent uses, per the enrollment contract."""
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/ca.crt")
    def ca_certificate() -> PlainTextResponse:
        return PlainTextResponse(state.ca_pem.decode(), media_type="application/x-pem-file")

    @app.post("/api/v1/enroll", status_code=201, response_model=None)
    async def enroll(request: Request) -> JSONResponse | dict[str, Any]:
        body = await request.json()
        with state.lock:
            state.enrollments.append(body)
            if state.fail_enroll_with is not None:
                return _error(state.fail_enroll_with, "unavailable", "try later")
            token = body.get("enrollment_token")
            if token not in state.tokens:
                return _error(
                    401,
                    "unauthorized",
                    "this enrollment token is unknown, used or expired: create a new one "
                    "(flctl devices tokens create)",
                )
            state.tokens.discard(token)  # one use
            device_id = f"dev-{len(state.enrollments)}"
            credential = "fld_" + secrets.token_urlsafe(24)
            state.credentials[credential] = device_id
        return {
            "device_id": device_id,
            "device_credential": credential,
            "ca_certificate": state.ca_pem.decode(),
            "node_id": 1000 + len(state.enrollments),
            "superlink_address": state.superlink_address,
            "heartbeat_interval_s": 5.0,
        }

    def _device(request: Request) -> str | JSONResponse:
        header = request.headers.get("authorization")
        with state.lock:
            state.authorizations.append(header)
            secret = header.removeprefix("Bearer ") if header else None
            device_id = state.credentials.get(secret or "")
        if device_id is None:
            return _error(401, "unauthorized", "this device credential is not valid: enroll again")
        return device_id

    @app.post("/api/v1/devices", status_code=201, response_model=None)
    async def register(request: Request) -> JSONResponse | dict[str, Any]:
        device_id = _device(request)
        if isinstance(device_id, JSONResponse):
            return device_id
        body = await request.json()
        with state.lock:
            state.registrations.append(body)
        if body.get("device_id") != device_id:
            return _error(403, "forbidden", "a device registers only itself")
        return {"device_id": device_id, "heartbeat_interval_s": 5.0}

    @app.post("/api/v1/devices/{path_id}/heartbeat", response_model=None)
    async def heartbeat(path_id: str, request: Request) -> JSONResponse | dict[str, Any]:
        device_id = _device(request)
        if isinstance(device_id, JSONResponse):
            return device_id
        if device_id != path_id:
            return _error(403, "forbidden", "another device's id")
        body = await request.json()
        with state.lock:
            state.heartbeats.append(body)
        return {"device_id": device_id, "server_time": datetime.now(UTC).isoformat()}

    @app.put("/api/v1/devices/{path_id}/capabilities", response_model=None)
    def capabilities(path_id: str, request: Request) -> JSONResponse | dict[str, Any]:
        device_id = _device(request)
        if isinstance(device_id, JSONResponse):
            return device_id
        return {"device_id": device_id}

    return app


class FakeCoordinator:
    """Serves ``build_app`` over TLS (or plain HTTP) on 127.0.0.1 in a thread; a context manager."""

    def __init__(self, pki: FleetPki, *, tls: bool = True) -> None:
        self.pki = pki
        self.state = FakeCoordinatorState(ca_pem=pki.ca_pem)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            build_app(self.state),
            log_level="warning",
            ws="none",
            ssl_certfile=str(pki.cert_file) if tls else None,
            ssl_keyfile=str(pki.key_file) if tls else None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def new_token(self) -> str:
        """A one-time enrollment token."""
        token = "fle_" + secrets.token_urlsafe(16)
        with self.state.lock:
            self.state.tokens.add(token)
        return token

    def __enter__(self) -> FakeCoordinator:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake coordinator did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
