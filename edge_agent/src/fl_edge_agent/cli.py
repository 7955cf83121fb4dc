"""`fl-edge-agent`: the device daemon's command line."""

from __future__ import annotations

import argparse
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

log = structlog.get_logger("fl_edge_agent")


DEFAULT_CONFIG = Path("/etc/fl-edge-agent/agent.toml")
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
    sub.add_parser("run", parents=[common], help="run the agent until SIGTERM")
    status = sub.add_parser("status", parents=[common], help="what the running agent reports")
    status.add_argument("--json", action="store_true", help="print JSON")
    config = sub.add_parser("config", help="configuration commands")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    config_sub.add_parser("check", parents=[common], help="validate the settings and show them")
    probe = sub.add_parser("probe", help="measure what this device is and can do")
    add_probe_arguments(probe)
    return parser


def _load(args: argparse.Namespace) -> AgentSettings:
    config = args.config
    if config is None and DEFAULT_CONFIG.exists():
        config = DEFAULT_CONFIG
    settings = AgentSettings.load(config, "agent", **{k: getattr(args, k) for k in SETTING_FLAGS})
    # `status` only reads a local file; `run` and `config check` judge the transport.
    if args.command != "status" and not settings.insecure:
        raise AgentConfigError(
            "TLS is not configured: this release talks plain HTTP only; set "
            "insecure = true (or pass --insecure) to accept that on a trusted network"
        )
    return settings


def _config_check(settings: AgentSettings) -> int:
    for key, value in settings.model_dump().items():
        print(f"{key} = {value}")
    print("config ok")
    return EXIT_OK


def _status(settings: AgentSettings, as_json: bool) -> int:
    status = read_status(settings.state_dir)
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
    lines = [
        ("agent", f"{'running' if live else 'NOT running'} (pid {status.pid})"),
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


def _run(settings: AgentSettings) -> int:
    configure_logging(settings.log_level)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("agent_signal", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    client = CoordinatorClient(settings.coordinator_url)
    try:
        Agent(settings, client, stop).run()
    finally:
        client.close()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of `fl-edge-agent`."""
    args = _parser().parse_args(argv)
    if args.command == "probe":
        return probe_main(args)
    try:
        settings = _load(args)
        if args.command == "config":
            return _config_check(settings)
        if args.command == "status":
            return _status(settings, args.json)
        return _run(settings)
    except SettingsError as exc:
        print(f"fl-edge-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except FlAgentError as exc:
        print(f"fl-edge-agent: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
