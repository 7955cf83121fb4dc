"""FakeSuperNode: records how Agent.run builds and drives its SuperNode, without Flower."""

from __future__ import annotations

from typing import Any, ClassVar


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
