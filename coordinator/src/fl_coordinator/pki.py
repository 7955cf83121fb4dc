"""The coordinator's TLS identity: a private CA and a server certificate it signs.

Files under ``<state_dir>/pki`` (directory 0700, keys 0600, certificates 0644):

- ``ca.crt`` / ``ca.key``: ECDSA P-384, self-signed, 10 years. Agents pin it by fingerprint.
- ``server.crt`` / ``server.key``: ECDSA P-256, 2 years, signed by the CA, names every host the
  coordinator is reached by plus ``127.0.0.1``, ``::1`` and ``localhost``.

The CA fingerprint is the SHA-256 of the CA certificate's DER encoding as 64 lowercase hex
characters, the value ``openssl x509 -in ca.crt -noout -fingerprint -sha256`` prints (there in
upper case with colons; :func:`fingerprint_matches` accepts both spellings).
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import ipaddress
import os
import re
import socket
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fl_coordinator.errors import ConfigError

log = structlog.get_logger(__name__)

CA_VALIDITY = timedelta(days=3652)
SERVER_VALIDITY = timedelta(days=730)
# A server certificate this close to its end is re-issued by the next ensure_pki().
RENEW_BEFORE = timedelta(days=30)
# Certificates start a little in the past, so that a device whose clock lags still accepts them.
BACKDATE = timedelta(hours=1)
ALWAYS_NAMES = ("127.0.0.1", "::1", "localhost")
_WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - listen-on-all, never a name
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_HEX64 = re.compile(r"[0-9a-f]{64}")

SanEntry = x509.DNSName | x509.IPAddress


@dataclass(frozen=True)
class PkiPaths:
    """Where the CA and the server certificate and their keys are."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path

    @property
    def ca_fingerprint(self) -> str:
        """SHA-256 of the CA certificate (DER), 64 lowercase hex characters."""
        return ca_fingerprint(self.ca_cert.read_bytes())


def ca_fingerprint(pem: bytes) -> str:
    """SHA-256 of the DER encoding of the (first) certificate in ``pem``, lowercase hex.

    Raises ValueError when ``pem`` holds no certificate.
    """
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex()


def fingerprint_matches(pem: bytes, given: str) -> bool:
    """Whether ``given`` is the fingerprint of the certificate in ``pem``.

    Accepts hex in any case, with or without colons, optionally prefixed ``SHA256:``.
    """
    text = given.strip().lower().removeprefix("sha256:").replace(":", "")
    if not _HEX64.fullmatch(text):
        return False
    return hmac.compare_digest(ca_fingerprint(pem), text)


def certificate_names(pem: bytes) -> list[str]:
    """The DNS names and IP addresses a certificate's subjectAltName lists, as text."""
    return [_name_text(name) for name in _sans(x509.load_pem_x509_certificate(pem))]


def certificate_names_host(pem: bytes, host: str) -> bool:
    """Whether a certificate's subjectAltName lists ``host`` (a DNS name or an IP address)."""
    try:
        name = _name(host)
    except ConfigError:
        return False
    return name is not None and name in _sans(x509.load_pem_x509_certificate(pem))


def ensure_pki(state_dir: Path, hosts: Sequence[str]) -> PkiPaths:
    """Create the CA and server certificate once; later calls reuse them.

    The server certificate is re-issued (same CA) when it lacks one of ``hosts``, is not signed
    by this CA, does not match its key, or ends within RENEW_BEFORE; the new one keeps the names
    of the old one. Raises ConfigError for a host that is no DNS name or IP address, or when only
    half of the CA (certificate or key) is there.
    """
    wanted = _names([*hosts, *ALWAYS_NAMES])
    pki = state_dir / "pki"
    pki.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki.chmod(0o700)
    paths = PkiPaths(
        ca_cert=pki / "ca.crt",
        ca_key=pki / "ca.key",
        server_cert=pki / "server.crt",
        server_key=pki / "server.key",
    )
    with _locked(pki):
        ca_cert, ca_key = _ensure_ca(paths)
        _ensure_server(paths, ca_cert, ca_key, wanted)
    return paths


# -- the CA ------------------------------------------------------------------------------------


def _ensure_ca(paths: PkiPaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    have_cert, have_key = paths.ca_cert.exists(), paths.ca_key.exists()
    if have_cert and have_key:
        paths.ca_key.chmod(0o600)
        cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        key = _load_key(paths.ca_key)
        if cert.public_key() != key.public_key():
            raise ConfigError(
                f"{paths.ca_key} is not the key of {paths.ca_cert}: restore both from the same "
                "backup (or remove the pki directory to create a new CA; every agent must then "
                "enroll again)"
            )
        return cert, key
    if have_cert or have_key:
        present, missing = (
            (paths.ca_cert, paths.ca_key) if have_cert else (paths.ca_key, paths.ca_cert)
        )
        raise ConfigError(
            f"{present} exists but {missing} does not: restore {missing.name} from a backup (or "
            "remove the pki directory to create a new CA; every agent must then enroll again)"
        )
    key = ec.generate_private_key(ec.SECP384R1())
    now = datetime.now(UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fl-coordinator"),
            # A random suffix tells two coordinators' CAs apart in a trust store.
            x509.NameAttribute(NameOID.COMMON_NAME, f"fl-coordinator CA {os.urandom(4).hex()}"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA384())
    )
    # Key first: a crash in between leaves a key without certificate, which is refused with a
    # message, never a certificate nobody holds the key of.
    _write_atomic(paths.ca_key, _key_pem(key), 0o600)
    _write_atomic(paths.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info("pki_ca_created", path=str(paths.ca_cert), fingerprint=_fingerprint_of(cert))
    return cert, key


def _fingerprint_of(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


# -- the server certificate --------------------------------------------------------------------


def _ensure_server(
    paths: PkiPaths,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    wanted: list[SanEntry],
) -> None:
    names = list(wanted)
    if paths.server_cert.exists() and paths.server_key.exists():
        paths.server_key.chmod(0o600)
        cert = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
        present = _sans(cert)
        if _still_good(cert, _load_key(paths.server_key), ca_cert) and all(
            name in present for name in wanted
        ):
            return
        # Names the old certificate carried stay: agents may reach the coordinator by them.
        names = present + [name for name in wanted if name not in present]
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        # Clients check the subjectAltName; the common name only labels the certificate.
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fl-coordinator")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA384())
    )
    # Key first: a new key beside the old certificate no longer matches it, so a crash in
    # between is repaired by the next call.
    _write_atomic(paths.server_key, _key_pem(key), 0o600)
    _write_atomic(paths.server_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info("pki_server_cert_issued", path=str(paths.server_cert), names=_texts(names))


def _still_good(
    cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> bool:
    if cert.public_key() != key.public_key() or cert.issuer != ca_cert.subject:
        return False
    if cert.not_valid_after_utc - RENEW_BEFORE < datetime.now(UTC):
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _sans(cert: x509.Certificate) -> list[SanEntry]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [name for name in ext.value if isinstance(name, x509.DNSName | x509.IPAddress)]


# -- host names --------------------------------------------------------------------------------


def _names(hosts: Sequence[str]) -> list[SanEntry]:
    """Hosts as SAN entries, in order, without duplicates; listen-on-all addresses are skipped."""
    names: list[SanEntry] = []
    for host in hosts:
        name = _name(host)
        if name is not None and name not in names:
            names.append(name)
    return names


def _name(host: str) -> SanEntry | None:
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text in _WILDCARD_ADDRESSES:
        return None
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    dns = text.lower().rstrip(".")
    labels = dns.split(".")
    if labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]
    if len(dns) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise ConfigError(
            f"host {host!r} is neither a DNS name nor an IP address: give the name or address "
            "agents use to reach the coordinator, without scheme or port (e.g. --host "
            "coordinator.example.org or --host 10.0.0.5)"
        )
    return x509.DNSName(dns)


def valid_host(host: str) -> bool:
    """Whether ``host`` can be a name of the server certificate (a DNS name or an IP address)."""
    try:
        return _name(host) is not None
    except ConfigError:
        return False


def this_host_name() -> str | None:
    """This machine's host name when it is a valid DNS name, else None."""
    name = socket.gethostname()
    return name if valid_host(name) else None


def _name_text(name: SanEntry) -> str:
    return str(name.value)


def _texts(names: Sequence[SanEntry]) -> list[str]:
    return [_name_text(name) for name in names]


# -- files -------------------------------------------------------------------------------------


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted: the service starts unattended; the file mode (0600, in a 0700 directory)
    # is what protects it.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path} is not an ECDSA private key: restore it from a backup")
    return key


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _locked(pki: Path) -> Iterator[None]:
    # `init` and `serve` started together must not each create half of a CA.
    fd = os.open(pki / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
