"""Tests for fl_edge_agent.settings: TOML file < FL_AGENT_* environment < flags."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from fl_edge_agent.settings import AgentSettings
from fl_shared.errors import SettingsError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("FL_AGENT_"):
            monkeypatch.delenv(key)


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(body)
    return path


FILE = """
[agent]
name = "from-file"
state_dir = "/srv/fl-state"
coordinator_url = "http://coord.example:8080"
superlink = "10.0.0.5:9092"
insecure = true
supernode_port = 9500
partition_id = 1
num_partitions = 3
torch_threads = 2
heartbeat_interval_s = 2.5
log_level = "debug"
labels = { site = "lab", rack = "r1" }

[coordinator]
name = "ignored: another program's table"
"""


def test_defaults_without_file(tmp_path: Path) -> None:
    settings = AgentSettings.load(None, "agent")
    assert settings.name  # the hostname
    assert settings.insecure is False
    assert settings.partition_id == 0
    assert settings.num_partitions == 1
    assert settings.heartbeat_interval_s is None
    assert settings.coordinator_url.startswith("http")


def test_toml_agent_table_is_read(tmp_path: Path) -> None:
    settings = AgentSettings.load(_config(tmp_path, FILE), "agent")
    assert settings.name == "from-file"
    assert settings.state_dir == Path("/srv/fl-state")
    assert settings.coordinator_url == "http://coord.example:8080"
    assert settings.superlink == "10.0.0.5:9092"
    assert settings.insecure is True
    assert settings.supernode_port == 9500
    assert settings.partition_id == 1
    assert settings.num_partitions == 3
    assert settings.torch_threads == 2
    assert settings.heartbeat_interval_s == 2.5
    assert settings.log_level == "debug"
    assert settings.labels == {"site": "lab", "rack": "r1"}


def test_missing_table_gives_defaults(tmp_path: Path) -> None:
    settings = AgentSettings.load(_config(tmp_path, '[other]\nname = "x"\n'), "agent")
    assert settings.partition_id == 0
    assert settings.name != "x"


def test_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FL_AGENT_NAME", "from-env")
    monkeypatch.setenv("FL_AGENT_PARTITION_ID", "2")
    monkeypatch.setenv("FL_AGENT_INSECURE", "false")
    settings = AgentSettings.load(_config(tmp_path, FILE), "agent")
    assert settings.name == "from-env"
    assert settings.partition_id == 2
    assert settings.insecure is False
    assert settings.superlink == "10.0.0.5:9092"  # untouched: still from the file


def test_flags_beat_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FL_AGENT_NAME", "from-env")
    monkeypatch.setenv("FL_AGENT_SUPERNODE_PORT", "9600")
    settings = AgentSettings.load(
        _config(tmp_path, FILE), "agent", name="from-flag", supernode_port=9700
    )
    assert settings.name == "from-flag"
    assert settings.supernode_port == 9700


def test_none_flags_do_not_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FL_AGENT_NAME", "from-env")
    settings = AgentSettings.load(
        _config(tmp_path, FILE), "agent", name=None, partition_id=None, insecure=None
    )
    assert settings.name == "from-env"
    assert settings.partition_id == 1
    assert settings.insecure is True


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = AgentSettings.load(None, "agent", name="n")
    with pytest.raises(ValidationError):
        settings.name = "other"  # type: ignore[misc]
    assert settings.name == "n"


@pytest.mark.parametrize(("partition_id", "num_partitions"), [(2, 2), (5, 2), (1, 1)])
def test_partition_id_must_be_below_num_partitions(partition_id: int, num_partitions: int) -> None:
    with pytest.raises(SettingsError) as info:
        AgentSettings.load(None, "agent", partition_id=partition_id, num_partitions=num_partitions)
    assert "partition_id" in str(info.value)
    assert str(num_partitions) in str(info.value)


def test_partition_check_across_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # File says 1 of 3; the environment shrinks the fleet to 1 partition.
    monkeypatch.setenv("FL_AGENT_NUM_PARTITIONS", "1")
    with pytest.raises(SettingsError, match="partition_id"):
        AgentSettings.load(_config(tmp_path, FILE), "agent")


@pytest.mark.parametrize("url", ["coord.example:8080", "ftp://coord.example", "//coord", ""])
def test_coordinator_url_needs_a_scheme(url: str) -> None:
    with pytest.raises(SettingsError, match="coordinator_url"):
        AgentSettings.load(None, "agent", coordinator_url=url)


@pytest.mark.parametrize("url", ["http://coord:8080", "https://coord.example"])
def test_coordinator_url_with_scheme_is_accepted(url: str) -> None:
    assert AgentSettings.load(None, "agent", coordinator_url=url).coordinator_url == url


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("supernode_port", 0),
        ("supernode_port", 70000),
        ("partition_id", -1),
        ("num_partitions", 0),
        ("torch_threads", -1),
        ("heartbeat_interval_s", 0),
        ("name", ""),
    ],
)
def test_out_of_range_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(SettingsError) as info:
        AgentSettings.load(None, "agent", **{field: value})
    assert str(info.value).startswith(f"invalid setting {field}: ")


def test_unknown_key_in_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        AgentSettings.load(_config(tmp_path, '[agent]\ncoordinator = "typo"\n'), "agent")
    assert "coordinator" in str(info.value)


def test_bad_toml_is_a_settings_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"cannot read config .*agent.*\.toml"):
        AgentSettings.load(_config(tmp_path, "[agent\nname = \n"), "agent")


def test_missing_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"absent\.toml"):
        AgentSettings.load(tmp_path / "absent.toml", "agent")


def test_clientapp_runtime_defaults_to_warm_and_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert AgentSettings.load(None, "agent").clientapp_runtime == "warm"
    monkeypatch.setenv("FL_AGENT_CLIENTAPP_RUNTIME", "isolated")
    assert AgentSettings.load(None, "agent").clientapp_runtime == "isolated"
    monkeypatch.setenv("FL_AGENT_CLIENTAPP_RUNTIME", "hot")
    with pytest.raises(SettingsError) as info:
        AgentSettings.load(None, "agent")
    message = str(info.value)
    assert message.startswith("invalid setting clientapp_runtime: ")
    assert "'warm'" in message and "'isolated'" in message  # the fix: the allowed values
