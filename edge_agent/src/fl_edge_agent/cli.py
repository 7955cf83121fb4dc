"""`fl-edge-agent`: the device daemon's command line."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import structlog

from fl_edge_agent import __version__
from fl_edge_agent.agent import Agent
from fl_edge_agent.coordinator_client import CoordinatorClient
from fl_edge_agent.errors import EXIT_CONFIG, EXIT_OK, AgentConfigError, FlAgentError
from fl_edge_agent.settings import AgentSettings
from fl_shared.errors import SettingsError
from fl_shared.log_setup import configure_logging

log = structlog.get_logger("fl_edge_agent")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fl-edge-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent until SIGTERM")
    run.add_argument("--config", type=Path, help="TOML file with an [agent] table")
    run.add_argument("--name", help="device name shown to admins (default: hostname)")
    run.add_argument("--state-dir", type=Path, help="where the device id and Flower state live")
    run.add_argument("--coordinator-url", help="coordinator REST API, e.g. http://host:8080")
    run.add_argument("--superlink", help="SuperLink Fleet API host:port")
    run.add_argument("--supernode-port", type=int, help="local SuperNode runtime port (9094)")
    run.add_argument("--data-dir", help="this device's local data directory")
    run.add_argument("--partition-id", type=int, help="which shard of the dataset is local")
    run.add_argument("--num-partitions", type=int, help="how many shards there are")
    run.add_argument("--torch-threads", type=int, help="CPU threads for training (0: all)")
    run.add_argument("--log-level", help="debug, info, warning, error")
    run.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="DEVELOPMENT ONLY: talk to the coordinator without TLS",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `fl-edge-agent`."""
    args = _parser().parse_args(argv)
    flags = {
        key: getattr(args, key)
        for key in (
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
    }
    try:
        settings = AgentSettings.load(args.config, "agent", **flags)
    except SettingsError as exc:
        print(f"fl-edge-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level)

    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("agent_signal", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        if not settings.insecure:
            raise AgentConfigError(
                "TLS is not configured: this release talks plain HTTP only; set "
                "insecure = true (or pass --insecure) to accept that on a trusted network"
            )
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        client = CoordinatorClient(settings.coordinator_url)
        try:
            Agent(settings, client, stop).run()
        finally:
            client.close()
    except FlAgentError as exc:
        print(f"fl-edge-agent: {exc}", file=sys.stderr)
        return exc.exit_code
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
