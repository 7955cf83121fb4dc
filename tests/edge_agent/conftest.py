"""Edge agent test fixtures: a SuperNode stand-in for tests of Agent.run."""

from __future__ import annotations

import pytest
from tests.edge_agent.fake_supernode import FakeSuperNode

from fl_edge_agent import agent as agent_module


@pytest.fixture
def fake_supernode(monkeypatch: pytest.MonkeyPatch) -> type[FakeSuperNode]:
    FakeSuperNode.instances = []
    monkeypatch.setattr(agent_module, "SuperNodeProcess", FakeSuperNode)
    return FakeSuperNode
