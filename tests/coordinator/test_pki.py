"""The CA and server certificate: files, extensions, reuse, re-issue, a real TLS handshake."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from fl_coordinator.errors import ConfigError
from fl_coordinator.pki import (
    PkiPaths,
    ca_fingerprint,
    certificate_names,
    ensure_pki,
    fingerprint_matches,
)


@pytest.fixture
def pki(tmp_path: Path) -> PkiPaths:
    return ensure_pki(tmp_path, ["coordinator.example.org", "10.0.0.5", "fd00::5"])


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _sans(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_files_exist_with_private_modes(pki: PkiPaths, tmp_path: Path) -> None:
    assert pki.ca_cert == tmp_path / "pki" / "ca.crt"
    assert pki.server_key == tmp_path / "pki" / "server.key"
    assert _mode(tmp_path / "pki") == 0o700
    assert _mode(pki.ca_key) == 0o600
    assert _mode(pki.server_key) == 0o600
    # No temp files are left behind.
    assert sorted(p.name for p in (tmp_path / "pki").iterdir()) == [
        ".lock",
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
    ]


def test_ca_is_a_p384_ca_for_ten_years(pki: PkiPaths) -> None:
    ca = _cert(pki.ca_cert)
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert timedelta(days=3650) <= lifetime <= timedelta(days=3653)
    ca.verify_directly_issued_by(ca)  # self-signed
    private = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert private.public_key() == key


def test_server_cert_chains_to_the_ca_and_names_every_host(pki: PkiPaths) -> None:
    ca, server = _cert(pki.ca_cert), _cert(pki.server_cert)
    # The signature checks out with the CA's public key, done by hand ...
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    assert server.signature_hash_algorithm is not None
    ca_key.verify(
        server.signature, server.tbs_certificate_bytes, ec.ECDSA(server.signature_hash_algorithm)
    )
    # ... and by a strict RFC 5280 / Web PKI path validation, for a DNS name and an address.
    store = verification.Store([ca])
    for name in (
        x509.DNSName("coordinator.example.org"),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ):
        verifier = verification.PolicyBuilder().store(store).build_server_verifier(name)
        assert verifier.verify(server, []) == [server, ca]

    sans = _sans(server)
    assert set(sans.get_values_for_type(x509.DNSName)) == {"coordinator.example.org", "localhost"}
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address(a) for a in ("10.0.0.5", "fd00::5", "127.0.0.1", "::1")
    }
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = server.not_valid_after_utc - server.not_valid_before_utc
    assert timedelta(days=729) <= lifetime <= timedelta(days=731)
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), password=None)
    assert key.public_key() == server.public_key()


def test_second_call_reuses_every_file(pki: PkiPaths, tmp_path: Path) -> None:
    before = {p.name: p.read_bytes() for p in (tmp_path / "pki").iterdir()}
    again = ensure_pki(tmp_path, ["coordinator.example.org", "10.0.0.5"])
    assert again == pki
    assert {p.name: p.read_bytes() for p in (tmp_path / "pki").iterdir()} == before


def test_a_new_host_reissues_the_server_cert_and_keeps_the_ca(
    pki: PkiPaths, tmp_path: Path
) -> None:
    ca_before, server_before = pki.ca_cert.read_bytes(), pki.server_cert.read_bytes()
    ensure_pki(tmp_path, ["[fd00::6]", "Edge.Example.org."])
    assert pki.ca_cert.read_bytes() == ca_before
    assert pki.server_cert.read_bytes() != server_before
    names = certificate_names(pki.server_cert.read_bytes())
    # The old names stay (agents may use them), the new ones are added, normalised.
    assert {"coordinator.example.org", "10.0.0.5", "edge.example.org", "fd00::6"} <= set(names)
    _cert(pki.server_cert).verify_directly_issued_by(_cert(pki.ca_cert))
    assert _mode(pki.server_key) == 0o600


def test_a_server_key_that_does_not_match_is_repaired(pki: PkiPaths, tmp_path: Path) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    pki.server_key.write_bytes(
        stranger.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ensure_pki(tmp_path, [])
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), password=None)
    assert key.public_key() == _cert(pki.server_cert).public_key()


def test_wildcard_listen_addresses_are_no_names(tmp_path: Path) -> None:
    paths = ensure_pki(tmp_path, ["0.0.0.0", "::", ""])
    assert sorted(certificate_names(paths.server_cert.read_bytes())) == [
        "127.0.0.1",
        "::1",
        "localhost",
    ]


@pytest.mark.parametrize("host", ["https://coordinator", "coordinator:8080", "bad_name", "a..b"])
def test_a_host_that_is_no_name_is_refused(tmp_path: Path, host: str) -> None:
    with pytest.raises(ConfigError, match="neither a DNS name nor an IP address"):
        ensure_pki(tmp_path, [host])


@pytest.mark.parametrize("missing", ["ca.crt", "ca.key"])
def test_half_a_ca_is_refused(pki: PkiPaths, tmp_path: Path, missing: str) -> None:
    (tmp_path / "pki" / missing).unlink()
    with pytest.raises(ConfigError, match=f"restore {missing}"):
        ensure_pki(tmp_path, [])


def test_fingerprint_is_sha256_of_the_der_in_lowercase_hex(pki: PkiPaths) -> None:
    pem = pki.ca_cert.read_bytes()
    der = _cert(pki.ca_cert).public_bytes(serialization.Encoding.DER)
    fingerprint = ca_fingerprint(pem)
    assert fingerprint == hashlib.sha256(der).hexdigest() == pki.ca_fingerprint
    assert len(fingerprint) == 64 and fingerprint == fingerprint.lower()
    openssl_style = ":".join(fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()
    for spelling in (
        fingerprint,
        fingerprint.upper(),
        openssl_style,
        f"SHA256:{openssl_style}",
        f"sha256:{fingerprint}",
        f"  {fingerprint}\n",
    ):
        assert fingerprint_matches(pem, spelling), spelling
    other = ca_fingerprint(pki.server_cert.read_bytes())
    for wrong in (other, fingerprint[:-1], fingerprint + "0", "", "sha1:" + fingerprint, "zz" * 32):
        assert not fingerprint_matches(pem, wrong), wrong


# -- a real TLS handshake ----------------------------------------------------------------------


@pytest.fixture
def tls_server(pki: PkiPaths) -> Iterator[int]:
    """A TLS server on 127.0.0.1 that answers b"ok" to each connection; yields its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                conn.close()  # the client refused us: that is what some tests want

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() the thread waits in
    listener.close()
    thread.join(timeout=10)
    assert not thread.is_alive()


def _client(pki: PkiPaths) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host name
    context.load_verify_locations(cafile=pki.ca_cert)  # ... against our CA only
    return context


@pytest.mark.parametrize("server_hostname", ["127.0.0.1", "localhost"])
def test_tls_handshake_trusting_only_the_ca(
    pki: PkiPaths, tls_server: int, server_hostname: str
) -> None:
    with (
        socket.create_connection(("127.0.0.1", tls_server), timeout=10) as raw,
        _client(pki).wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        assert tls.recv(2) == b"ok"
        peer = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
        assert peer == _cert(pki.server_cert)


def test_tls_refuses_a_name_the_cert_does_not_carry(pki: PkiPaths, tls_server: int) -> None:
    with (
        socket.create_connection(("127.0.0.1", tls_server), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="mismatch"),
    ):
        _client(pki).wrap_socket(raw, server_hostname="elsewhere.example.org")


def test_tls_refuses_another_ca(pki: PkiPaths, tls_server: int, tmp_path: Path) -> None:
    other = ensure_pki(tmp_path / "other", [])
    with (
        socket.create_connection(("127.0.0.1", tls_server), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        _client(other).wrap_socket(raw, server_hostname="127.0.0.1")


def test_server_cert_is_valid_now(pki: PkiPaths) -> None:
    server = _cert(pki.server_cert)
    now = datetime.now(UTC)
    assert server.not_valid_before_utc < now < server.not_valid_after_utc
