"""Doubles for tests of Agent.run: a FakeSuperNode (no Flower), and run_in_thread."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from fl_edge_agent.agent import Agent


class FakeSuperNode:
    """Records what Agent.run does with its SuperNode, without starting Flower."""

    instances: ClassVar[list[FakeSuperNode]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.state = "stopped"
        self.restarts = 0
        self.hangs = 0
        self.pid: int | None = None
        self.warm_runtime: Any = None
        self.calls: list[str] = []
        FakeSuperNode.instances.append(self)

    def start(self) -> None:
        self.calls.append("start")
        self.state = "running"

    def check(self) -> None:
        self.calls.append("check")

    def stop(self, grace_s: float = 10.0) -> None:
        self.calls.append("stop")
        self.state = "stopped"


def run_in_thread(agent: Agent) -> tuple[threading.Thread, list[BaseException]]:
    """Agent.run in a daemon thread; what it raised ends up in the returned list."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            agent.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, errors
