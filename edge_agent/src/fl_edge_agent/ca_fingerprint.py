"""CaFingerprint: the SHA-256 of a CA certificate's DER, as an administrator reads it out."""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from fl_edge_agent.errors import AgentConfigError, UntrustedCoordinator

_SEPARATORS = re.compile(r"[\s:]")


@dataclass(frozen=True)
class CaFingerprint:
    """32 bytes of SHA-256; printed as colon-separated upper-case hex (openssl's style)."""

    digest: bytes

    @classmethod
    def parse(cls, text: str) -> CaFingerprint:
        """Accept hex with or without colons, in any case, with an optional ``SHA256:`` prefix."""
        value = text.strip()
        if value.lower().startswith("sha256:"):
            value = value[len("sha256:") :]
        value = _SEPARATORS.sub("", value)
        if len(value) != 64 or any(c not in string.hexdigits for c in value):
            raise AgentConfigError(
                f"--ca-fingerprint {text!r} is not a SHA-256 fingerprint: expected 64 hex digits "
                "(colons allowed), e.g. the output of `openssl x509 -noout -fingerprint -sha256`"
            )
        return cls(bytes.fromhex(value))

    @classmethod
    def of_pem(cls, pem: bytes, source: str) -> CaFingerprint:
        """The fingerprint of the first certificate in ``pem`` (UntrustedCoordinator if none)."""
        return cls(hashlib.sha256(certificate_der(pem, source)).digest())

    def __str__(self) -> str:
        return ":".join(f"{b:02X}" for b in self.digest)


def certificate_der(pem: bytes, source: str) -> bytes:
    """The DER of the first PEM certificate in ``pem``; UntrustedCoordinator if it has none."""
    try:
        return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    except ValueError as exc:
        raise UntrustedCoordinator(
            f"{source} is not a PEM certificate: check the coordinator URL (it must serve "
            "/api/v1/ca.crt) or the CA file"
        ) from exc
