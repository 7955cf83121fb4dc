"""`fl-coordinator init`: create the state dir, TLS identity, registry and first admin token."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from fl_coordinator.credentials import CredentialStore
from fl_coordinator.errors import EXIT_CONFIG, EXIT_OK, ConfigError, FlCoordinatorError
from fl_coordinator.pki import PkiPaths, certificate_names, ensure_pki, this_host_name
from fl_coordinator.registry import Registry
from fl_coordinator.settings import CoordinatorSettings

INITIAL_ADMIN = "initial-admin"
_ANY_ADDRESS = ("", "0.0.0.0", "::")  # noqa: S104 - listen-on-all addresses, never a name


def run_init(
    settings: CoordinatorSettings,
    hosts: list[str],
    new_admin_token: bool,
    token_file: Path | None = None,
) -> int:
    """Initialise the coordinator (idempotent) and say how to use it; returns an exit code.

    ``hosts`` are the names and addresses agents reach the coordinator by; the server
    certificate names them (besides the configured listen address, this machine's host name
    and loopback). An admin token is created when none is valid yet, or on ``new_admin_token``;
    with ``token_file`` it is written there (mode 0600) instead of printed, so that the
    package's postinst can keep it out of the install log.
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
    if issued is not None and token_file is not None:
        try:
            _write_secret(token_file, issued)
        except OSError as exc:
            print(f"fl-coordinator: cannot write {token_file} ({exc.strerror})", file=err)
            return EXIT_CONFIG
    _report(out, settings, pki, hosts, issued, fresh, token_file)
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
    token_file: Path | None = None,
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
    if admin_secret is not None and token_file is not None:
        print(
            f"\nAdmin token written to {token_file} (the coordinator stores only its hash).\n"
            "Use it with flctl:\n"
            f"  export FLCTL_URL={url}\n"
            f"  export FLCTL_TOKEN=$(cat {token_file})",
            file=out,
        )
    elif admin_secret is not None:
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


def _write_secret(path: Path, secret: str) -> None:
    # Created 0600 from the start: the token never exists with wider permissions.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret + "\n")
    os.chmod(path, 0o600)


def _url(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"https://{host}:{port}"
