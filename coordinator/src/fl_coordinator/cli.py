"""`fl-coordinator`: serve the SuperLink, REST API and registry as one supervised service."""

from __future__ import annotations

import argparse
import signal
import sys
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import structlog
import uvicorn

from fl_coordinator import __version__
from fl_coordinator.api_app import create_app
from fl_coordinator.demo import DemoOptions, run_demo
from fl_coordinator.errors import EXIT_CONFIG, EXIT_OK, ConfigError, FlCoordinatorError
from fl_coordinator.fleet_gateway import FleetGateway
from fl_coordinator.flower_control import FlowerControl
from fl_coordinator.init_command import run_init
from fl_coordinator.notifying_server import NotifyingServer
from fl_coordinator.pki import certificate_names, certificate_names_host
from fl_coordinator.port_check import ensure_port_free
from fl_coordinator.registry import Registry
from fl_coordinator.run_service import RunService
from fl_coordinator.serving_tuning import tune_for_serving
from fl_coordinator.settings import CoordinatorSettings
from fl_coordinator.superlink_process import SuperLinkProcess, SuperLinkTls
from fl_shared.errors import SettingsError
from fl_shared.log_setup import configure_logging
from fl_shared.systemd_notifier import SystemdNotifier

log = structlog.get_logger("fl_coordinator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fl-coordinator", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the coordinator service")
    serve.add_argument("--config", type=Path, help="TOML file with a [coordinator] table")
    serve.add_argument("--host", help="REST API address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="REST API port (default 8080)")
    serve.add_argument("--state-dir", type=Path, help="registry, SuperLink state, models")
    serve.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in state dir)")
    serve.add_argument("--superlink-host", help="SuperLink address (default 127.0.0.1)")
    serve.add_argument("--superlink-port", type=int, help="SuperLink port (default 8000)")
    serve.add_argument("--data-dir", type=Path, help="Fashion-MNIST IDX dir for evaluation")
    serve.add_argument("--log-level", help="debug, info, warning, error")
    serve.add_argument(
        "--insecure-dev",
        "--insecure",
        dest="insecure",
        action="store_true",
        default=None,
        help="DEVELOPMENT ONLY: plain HTTP, no TLS, no SuperNode authentication, REST calls "
        "without a token act as an admin; never on a network others can reach",
    )
    serve.add_argument(
        "--public-read-only",
        dest="public_read_only",
        action="store_true",
        default=None,
        help="REST reads without a token: anyone who reaches the API sees devices, runs and "
        "models and downloads checkpoints (admin routes still need an admin token)",
    )
    serve.add_argument("--fleet-port", type=int, help="Fleet API gateway port (default 9092)")
    serve.add_argument("--fleet-address", help="host:port devices reach the Fleet API at")
    init = sub.add_parser(
        "init",
        help="create the state dir, a CA, the server certificate and the first admin token",
        description="Example: fl-coordinator init --state-dir /var/lib/fl-coordinator "
        "--host coord.lab.example --host 10.0.0.5",
    )
    init.add_argument("--config", type=Path, help="TOML file with a [coordinator] table")
    init.add_argument("--state-dir", type=Path, help="where the coordinator keeps its state")
    init.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in state dir)")
    init.add_argument(
        "--host",
        action="append",
        default=[],
        dest="tls_hosts",
        help="a name or address devices use for the coordinator (repeat; 127.0.0.1 is added)",
    )
    init.add_argument(
        "--new-admin-token", action="store_true", help="create another admin token (shown once)"
    )
    init.add_argument(
        "--admin-token-file",
        type=Path,
        help="write a new admin token to this file (mode 0600) instead of printing it",
    )
    demo = sub.add_parser("demo", help="train on a local fleet of agents on 127.0.0.1")
    demo.add_argument("--state-dir", type=Path, default=Path(".demo"))
    demo.add_argument("--devices", type=int, default=3)
    demo.add_argument("--rounds", type=int, default=3)
    demo.add_argument("--model", default="cnn")
    demo.add_argument("--dataset", default="fashion-mnist")
    demo.add_argument("--data-dir", type=Path, default=None)
    demo.add_argument("--max-train-samples", type=int, default=0)
    demo.add_argument("--learning-rate", type=float, default=0.01)
    return parser


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    # SIGTERM is a normal stop: unwind like Ctrl-C so every part is stopped, then exit 0.
    raise KeyboardInterrupt


def _tls(settings: CoordinatorSettings) -> SuperLinkTls | None:
    """The certificate files made by `fl-coordinator init` (None in the development mode)."""
    if settings.insecure:
        log.warning(
            "insecure_development_mode",
            detail="plain HTTP, no SuperNode authentication, REST calls without a token act "
            "as an admin: never run like this on a network others can reach",
        )
        return None
    pki = settings.pki_dir
    tls = SuperLinkTls(ca_cert=pki / "ca.crt", cert=pki / "server.crt", key=pki / "server.key")
    if settings.superlink_host not in ("127.0.0.1", "::1", "localhost"):
        raise ConfigError(
            f"superlink_host {settings.superlink_host!r} would expose the SuperLink's Control "
            "API, which has no authentication: keep it on 127.0.0.1; devices reach the Fleet "
            "API through the gateway on fleet_host:fleet_port"
        )
    missing = [str(p) for p in (tls.ca_cert, tls.cert, tls.key) if not p.is_file()]
    if missing:
        raise ConfigError(
            f"no TLS identity in {pki} (missing {', '.join(missing)}): run `fl-coordinator "
            f"init --state-dir {settings.state_dir} --host <name devices use>` first "
            "(or pass --insecure-dev for a development setup on a trusted machine)"
        )
    # The ServerApp reports each round to api_url over TLS: a certificate that does not name
    # that host would make every report fail while the run still looks alive.
    api_host = urlsplit(settings.api_url).hostname or ""
    if not certificate_names_host(tls.cert.read_bytes(), api_host):
        names = ", ".join(certificate_names(tls.cert.read_bytes()))
        raise ConfigError(
            f"the server certificate {tls.cert} does not name {api_host} (it names {names}), "
            f"where this coordinator's API listens (host = {settings.host!r}): run "
            f"`fl-coordinator init --state-dir {settings.state_dir} --host {api_host}` (keeps the "
            "CA, so enrolled devices stay valid), or set host to one of the names"
        )
    return tls


def _announce_public_reads(settings: CoordinatorSettings) -> None:
    """Say loudly that reads need no credential (the public read-only mode)."""
    if settings.public_read_only:
        log.warning(
            "public_read_only_mode",
            detail="REST reads need no credential: anyone who reaches the API sees every "
            "device, run and model and can download checkpoints; admin routes still need an "
            "admin token. Turn it off unless the network is trusted (public_read_only = false)",
        )


def _ready_status(settings: CoordinatorSettings, tls: SuperLinkTls | None) -> str:
    """The STATUS= line systemd shows once the coordinator serves."""
    scheme = "http" if tls is None else "https"
    status = (
        f"serving API on {scheme}://{settings.host}:{settings.port}, "
        f"SuperLink {settings.superlink_address}"
    )
    if tls is not None:
        status += f", Fleet API on {settings.gateway_host}:{settings.fleet_port}"
    return status


def serve(settings: CoordinatorSettings, notifier: SystemdNotifier) -> int:
    """Start every part, serve until SIGTERM/SIGINT, stop every part.

    Under systemd (Type=notify) ``notifier`` sends READY=1 once the REST API accepts
    connections, WATCHDOG=1 from the API's event loop, and STOPPING=1 when the stop begins.
    """
    tls = _tls(settings)
    _announce_public_reads(settings)
    ensure_port_free(settings.host, settings.port, "REST API", "--port")
    ensure_port_free(
        settings.superlink_host, settings.superlink_port, "SuperLink", "--superlink-port"
    )
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    # Until uvicorn takes over signals, SIGTERM unwinds the ExitStack like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    with ExitStack() as stack:
        registry = Registry(
            settings.resolved_database_url,
            stale_after_s=settings.stale_after_s,
            offline_after_s=settings.offline_after_s,
        )
        stack.callback(registry.close)
        registry.migrate()

        superlink = SuperLinkProcess(
            host=settings.superlink_host,
            port=settings.superlink_port,
            state_dir=settings.state_dir,
            tls=tls,
        )
        stack.callback(superlink.stop)
        superlink.start()

        if tls is not None:
            ensure_port_free(
                settings.gateway_host, settings.fleet_port, "Fleet API", "--fleet-port"
            )
            gateway = FleetGateway(
                host=settings.gateway_host,
                port=settings.fleet_port,
                upstream=f"https://{settings.superlink_address}",
                ca_cert=tls.ca_cert,
                cert=tls.cert,
                key=tls.key,
            )
            gateway.start()
            stack.callback(gateway.stop)

        control = FlowerControl(
            settings.superlink_address,
            insecure=tls is None,
            root_certificates=None if tls is None else str(tls.ca_cert),
        )
        stack.callback(control.close)
        runs = RunService(registry, control, settings)
        runs.recover_interrupted(resume=settings.resume_interrupted_runs)
        runs.start()
        stack.callback(runs.stop)

        app = create_app(registry, runs, settings)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            ssl_certfile=None if tls is None else str(tls.cert),
            ssl_keyfile=None if tls is None else str(tls.key),
        )
        log.info(
            "coordinator_serving",
            api=f"http://{settings.host}:{settings.port}",
            superlink=settings.superlink_address,
            database=registry.url.split("://", 1)[0],
            state_dir=str(settings.state_dir),
        )
        stack.callback(log.info, "coordinator_stopped")
        tune_for_serving()
        NotifyingServer(config, notifier, _ready_status(settings, tls)).run()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of `fl-coordinator`."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        opts = DemoOptions(
            state_dir=args.state_dir.resolve(),
            devices=args.devices,
            rounds=args.rounds,
            model=args.model,
            dataset=args.dataset,
            data_dir=args.data_dir,
            max_train_samples=args.max_train_samples,
            learning_rate=args.learning_rate,
        )
        configure_logging("warning")
        return run_demo(opts, sys.stdout)
    if args.command == "init":
        return _init(args)
    flags = {
        "fleet_address": args.fleet_address,
        "fleet_port": args.fleet_port,
        "host": args.host,
        "port": args.port,
        "state_dir": args.state_dir,
        "database_url": args.database_url,
        "superlink_host": args.superlink_host,
        "superlink_port": args.superlink_port,
        "data_dir": args.data_dir,
        "log_level": args.log_level,
        "insecure": args.insecure,
        "public_read_only": args.public_read_only,
    }
    try:
        settings = CoordinatorSettings.load(args.config, "coordinator", **flags)
    except SettingsError as exc:
        print(f"fl-coordinator: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level)
    try:
        return serve(settings, SystemdNotifier())
    except FlCoordinatorError as exc:
        print(f"fl-coordinator: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_OK


def _init(args: argparse.Namespace) -> int:
    flags = {"state_dir": args.state_dir, "database_url": args.database_url}
    try:
        settings = CoordinatorSettings.load(args.config, "coordinator", **flags)
    except SettingsError as exc:
        print(f"fl-coordinator: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging("warning")
    try:
        return run_init(
            settings, args.tls_hosts, args.new_admin_token, token_file=args.admin_token_file
        )
    except FlCoordinatorError as exc:
        print(f"fl-coordinator: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
