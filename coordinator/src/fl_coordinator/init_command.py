"""`fl-coordinator init`: create the state dir, TLS identity, registry and first admin token."""

from __future__ import annotations

import sys
from typing import TextIO

from fl_coordinator.credentials import CredentialStore
from fl_coordinator.errors import EXIT_CONFIG, EXIT_OK, ConfigError, FlCoordinatorError
from fl_coordinator.pki import PkiPaths, certificate_names, ensure_pki, this_host_name
from fl_coordinator.registry import Registry
from fl_coordinator.settings import CoordinatorSettings

INITIAL_ADMIN = "initial-admin"
_ANY_ADDRESS = ("", "0.0.0.0", "::")  # noqa: S104 - listen-on-all addresses, never a name


def run_init(settings: CoordinatorSettings, hosts: list[str], new_admin_token: bool) -> int:
    """Initialise the coordinator (idempotent) and say how to use it; returns an exit code.

    ``hosts`` are the names and addresses agents reach the coordinator by; the server
    certificate names them (besides the configured listen address, this machine's host name
    and loopback). An admin token is created when none is valid yet, or on ``new_admin_token``.
    """
    out, err = sys.stdout, sys.stderr
    names = _cert_hosts(settings, hosts)
    try:
        settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        print(
            f"fl-coordinator: cannot create the state dir {settings.state_dir} ({exc.strerror}): "
            "run as the service user (or root), or pass --state-dir",
            file=err,
        )
        return EXIT_CONFIG
    try:
        fresh = not (settings.state_dir / "pki" / "ca.crt").exists()
        pki = _pki(settings, names)
        registry = Registry(settings.resolved_database_url)
        try:
            registry.migrate()
            store = CredentialStore(registry)
            issued = None
            if new_admin_token or not store.any_active("admin"):
                issued = store.create("admin", INITIAL_ADMIN).secret
        finally:
            registry.close()
    except FlCoordinatorError as exc:
        print(f"fl-coordinator: {exc}", file=err)
        return exc.exit_code
    _report(out, settings, pki, hosts, issued, fresh)
    return EXIT_OK


def _pki(settings: CoordinatorSettings, names: list[str]) -> PkiPaths:
    try:
        return ensure_pki(settings.state_dir, names)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot use the TLS files in {settings.state_dir / 'pki'} ({exc}): fix their owner "
            "and permissions, or restore them from a backup"
        ) from exc


def _cert_hosts(settings: CoordinatorSettings, hosts: list[str]) -> list[str]:
    names = list(hosts)
    if settings.host not in _ANY_ADDRESS:
        names.append(settings.host)
    own = this_host_name()
    if own is not None:
        names.append(own)
    return names


def _report(
    out: TextIO,
    settings: CoordinatorSettings,
    pki: PkiPaths,
    hosts: list[str],
    admin_secret: str | None,
    new_ca: bool,
) -> None:
    fingerprint = pki.ca_fingerprint
    names = certificate_names(pki.server_cert.read_bytes())
    # The host given now, else the first the certificate ever named (an earlier --host).
    url = _url(hosts[0] if hosts else names[0], settings.port)
    if admin_secret is None and not new_ca:
        print(f"already initialised: {settings.state_dir} (no new admin token created)", file=out)
    else:
        made = "a new CA" if new_ca else "the existing CA"
        print(f"initialised {settings.state_dir} with {made}", file=out)
    if admin_secret is not None:
        print(
            "\nAdmin token (shown this once: the coordinator stores only its hash):\n"
            f"  {admin_secret}\n"
            "Use it with flctl:\n"
            f"  export FLCTL_URL={url}\n"
            f"  export FLCTL_TOKEN={admin_secret}",
            file=out,
        )
    print(
        f"\nCA certificate:  {pki.ca_cert}\n"
        f"CA fingerprint:  {fingerprint}  (SHA-256 of the certificate, DER)\n"
        f"Server names:    {', '.join(names)}\n"
        "\nEnroll an agent (each enrollment token works once):\n"
        f"  fl-edge-agent enroll --coordinator {url} "
        f"--token <from flctl devices enroll-token> --ca-fingerprint {fingerprint}",
        file=out,
    )


def _url(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"https://{host}:{port}"
