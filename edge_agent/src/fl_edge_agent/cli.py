"""`fl-edge-agent`: the device daemon's command line."""

from __future__ import annotations

import argparse
import importlib.util
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import structlog

from fl_edge_agent import __version__
from fl_edge_agent.agent import Agent
from fl_edge_agent.agent_status import AgentStatus, read_status
from fl_edge_agent.coordinator_client import CoordinatorClient
from fl_edge_agent.enrolled_identity import EnrolledIdentity, IdentityFiles
from fl_edge_agent.enrollment_wait import wait_for_enrollment
from fl_edge_agent.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    AgentConfigError,
    FlAgentError,
)
from fl_edge_agent.probe_command import add_probe_arguments, probe_main
from fl_edge_agent.settings import AgentSettings
from fl_shared.errors import SettingsError
from fl_shared.log_setup import configure_logging
from fl_shared.systemd_notifier import SystemdNotifier

log = structlog.get_logger("fl_edge_agent")


DEFAULT_CONFIG = Path("/etc/fl-edge-agent/agent.toml")
NOT_ENROLLED = (
    "this device is not enrolled, and without enrollment there is no TLS: enroll it "
    "(fl-edge-agent enroll --coordinator https://HOST --token TOKEN; docs/agent-enrollment.md), "
    "or on a trusted development network set insecure = true (or pass --insecure)"
)
TORCH_FIX = (
    "install torch where the agent finds it: sudo /opt/fl-edge-agent/bin/uv pip install "
    "--python /opt/fl-edge-agent/bin/python3 --target /usr/local/lib/fl-edge-agent/python "
    "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0 (docs/install.md), "
    "then restart the agent"
)
SETTING_FLAGS = (
    "name",
    "state_dir",
    "coordinator_url",
    "superlink",
    "supernode_port",
    "data_dir",
    "partition_id",
    "num_partitions",
    "torch_threads",
    "log_level",
    "insecure",
)


def _settings_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, help=f"TOML file with an [agent] table (default {DEFAULT_CONFIG})"
    )
    common.add_argument("--name", help="device name shown to admins (default: hostname)")
    common.add_argument("--state-dir", type=Path, help="where the device id and Flower state live")
    common.add_argument("--coordinator-url", help="coordinator REST API, e.g. http://host:8080")
    common.add_argument("--superlink", help="SuperLink Fleet API host:port")
    common.add_argument("--supernode-port", type=int, help="local SuperNode runtime port (9094)")
    common.add_argument("--data-dir", help="this device's local data directory")
    common.add_argument("--partition-id", type=int, help="which shard of the dataset is local")
    common.add_argument("--num-partitions", type=int, help="how many shards there are")
    common.add_argument("--torch-threads", type=int, help="CPU threads for training (0: all)")
    common.add_argument("--log-level", help="debug, info, warning, error")
    common.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="DEVELOPMENT ONLY: talk to the coordinator without TLS",
    )
    return common


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fl-edge-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    common = _settings_options()
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common], help="run the agent until SIGTERM")
    run.add_argument(
        "--wait-for-enrollment",
        action="store_true",
        help="when not enrolled yet, wait for `fl-edge-agent enroll` instead of exiting "
        "(the systemd unit does this)",
    )
    status = sub.add_parser("status", parents=[common], help="what the running agent reports")
    status.add_argument("--json", action="store_true", help="print JSON")
    config = sub.add_parser("config", help="configuration commands")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    config_sub.add_parser("check", parents=[common], help="validate the settings and show them")
    _add_enroll(sub.add_parser("enroll", help="enroll this device with a one-time token"))
    probe = sub.add_parser("probe", help="measure what this device is and can do")
    add_probe_arguments(probe)
    return parser


def _add_enroll(enroll: argparse.ArgumentParser) -> None:
    enroll.add_argument(
        "--coordinator", required=True, help="the coordinator's URL, e.g. https://fleet.example"
    )
    enroll.add_argument(
        "--token", required=True, help="the one-time enrollment token (fle_...); - reads stdin"
    )
    enroll.add_argument(
        "--ca-fingerprint",
        help="SHA-256 fingerprint of the coordinator's CA: the CA is downloaded and checked",
    )
    enroll.add_argument("--ca-file", type=Path, help="the coordinator's CA certificate (PEM)")
    enroll.add_argument(
        "--force", action="store_true", help="replace an existing identity (a new key)"
    )
    enroll.add_argument(
        "--insecure-dev", action="store_true", help="DEVELOPMENT ONLY: allow an http:// URL"
    )
    enroll.add_argument(
        "--config", type=Path, help=f"TOML file with an [agent] table (default {DEFAULT_CONFIG})"
    )
    enroll.add_argument("--state-dir", type=Path, help="where the identity is kept")
    enroll.add_argument("--name", help="device name shown to admins (default: hostname)")


def _settings(args: argparse.Namespace) -> AgentSettings:
    config = args.config
    if config is None and DEFAULT_CONFIG.exists():
        config = DEFAULT_CONFIG
    flags = {k: getattr(args, k, None) for k in SETTING_FLAGS}
    return AgentSettings.load(config, "agent", **flags)


def _load(args: argparse.Namespace) -> tuple[AgentSettings, EnrolledIdentity | None]:
    """The settings and the enrolled identity, if any (its coordinator and SuperLink apply)."""
    settings = _settings(args)
    # `status` only reads a local file; `run` and `config check` judge the transport.
    if args.command == "status":
        return settings, None
    enrolled = IdentityFiles(settings.state_dir).load()
    if enrolled is None:
        # `config check` judges the file before enrollment too; `run` needs one or --insecure.
        if not settings.insecure and args.command == "run":
            raise AgentConfigError(NOT_ENROLLED)
        return settings, None
    settings = enrolled.apply(settings)
    if not settings.coordinator_url.startswith("https://") and not settings.insecure:
        raise AgentConfigError(
            f"coordinator_url {settings.coordinator_url} is plain HTTP, which would send this "
            "device's credential in clear: use the https:// URL (or remove coordinator_url to "
            "use the enrolled one), or on a development network set insecure = true"
        )
    return settings, enrolled


def _config_check(settings: AgentSettings, enrolled: EnrolledIdentity | None) -> int:
    for key, value in settings.model_dump().items():
        print(f"{key} = {value}")
    if enrolled is None and settings.insecure:
        print("enrolled = no (development mode: plain HTTP, SuperNode --insecure)")
    elif enrolled is None:
        print("enrolled = no (run: fl-edge-agent enroll --coordinator URL --token TOKEN)")
    else:
        record = enrolled.record
        print(
            f"enrolled = device {record.device_id}, node {record.node_id}, since "
            f"{record.enrolled_at.isoformat(timespec='seconds')} ({enrolled.files.dir})"
        )
    print("config ok")
    return EXIT_OK


def _status(settings: AgentSettings, as_json: bool) -> int:
    try:
        status = read_status(settings.state_dir)
    except PermissionError:
        print(
            f"fl-edge-agent: cannot read the status in {settings.state_dir}: permission denied "
            "(run it as root or as the agent's user: sudo fl-edge-agent status)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if status is None:
        print(
            f"fl-edge-agent: no status in {settings.state_dir}: the agent has not run there "
            "(check --state-dir, or start it: systemctl start fl-edge-agent)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    live = status.is_live()
    if as_json:
        print(json.dumps({**status.model_dump(mode="json"), "running": live}, indent=2))
        return EXIT_OK if live else EXIT_FAILURE
    ack = status.last_heartbeat_ack_at
    state = status.state if live or status.state != "running" else "exited"
    lines = [
        ("agent", f"{'running' if live else 'NOT running'} (pid {status.pid}), {state}"),
        ("device", f"{status.device_id or '-'} ({status.name})"),
        ("registered", "yes" if status.registered else "no"),
        ("coordinator", status.coordinator_url),
        ("supernode", f"{status.supernode_state}, {status.supernode_restarts} restarts"),
        ("clientapp runtime", _runtime_line(status)),
        ("activity", status.activity),
        ("last heartbeat acknowledged", ack.isoformat(timespec="seconds") if ack else "never"),
        ("last error", status.last_error or "-"),
        ("updated", status.updated_at.isoformat(timespec="seconds")),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")
    return EXIT_OK if live else EXIT_FAILURE


def _runtime_line(status: AgentStatus) -> str:
    if status.clientapp_runtime != "warm":
        return f"{status.clientapp_runtime} (a Flower process per message)"
    return f"warm, {status.runtime_state or 'not started'} (pid {status.runtime_pid or '-'})"


def _stop_on_signals() -> threading.Event:
    """An event that SIGTERM and SIGINT set."""
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("agent_signal", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return stop


def _enrolled_when_waited(args: argparse.Namespace, stop: threading.Event) -> bool:
    """For `run --wait-for-enrollment`: wait until enrolled; False when stopped first."""
    settings = _settings(args)
    if settings.insecure or IdentityFiles(settings.state_dir).exists():
        return True
    configure_logging(settings.log_level)
    return wait_for_enrollment(settings, stop, SystemdNotifier()) is not None


def _warn_without_torch() -> None:
    """Log, at start, that this device cannot train: torch is installed separately."""
    # find_spec locates the package without importing it (the daemon never imports torch).
    if importlib.util.find_spec("torch") is None:
        log.error("torch_missing", consequence="this device cannot train", fix=TORCH_FIX)


def _run(settings: AgentSettings, enrolled: EnrolledIdentity | None, stop: threading.Event) -> int:
    configure_logging(settings.log_level)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    _warn_without_torch()
    https = settings.coordinator_url.startswith("https://")
    client = CoordinatorClient(
        settings.coordinator_url,
        credential=enrolled.credential if enrolled else None,
        verify=enrolled.coordinator_tls() if enrolled and https else None,
    )
    try:
        Agent(settings, client, stop, enrolled=enrolled).run()
    finally:
        client.close()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of `fl-edge-agent`."""
    args = _parser().parse_args(argv)
    if args.command == "probe":
        return probe_main(args)
    try:
        if args.command == "enroll":
            # Imported here: key generation needs `cryptography`, which the daemon never loads.
            from fl_edge_agent.enrollment import enroll_main

            return enroll_main(args, _settings(args))
        stop = _stop_on_signals() if args.command == "run" else threading.Event()
        waited = args.command == "run" and args.wait_for_enrollment
        if waited and not _enrolled_when_waited(args, stop):
            return EXIT_OK
        settings, enrolled = _load(args)
        if args.command == "config":
            return _config_check(settings, enrolled)
        if args.command == "status":
            return _status(settings, args.json)
        return _run(settings, enrolled, stop)
    except SettingsError as exc:
        print(f"fl-edge-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except FlAgentError as exc:
        print(f"fl-edge-agent: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
