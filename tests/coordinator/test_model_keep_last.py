"""The model_keep_last setting: from env or file, validated, and carried to the run's store."""

from __future__ import annotations

from pathlib import Path

import pytest

from fl_coordinator.model_store import DEFAULT_KEEP_LAST
from fl_coordinator.run_service import run_config_for
from fl_coordinator.server_app import model_store_for
from fl_coordinator.settings import CoordinatorSettings
from fl_shared.errors import SettingsError
from fl_shared.models import create_model
from fl_shared.wire import RunRequest

ENV = "FL_COORDINATOR_MODEL_KEEP_LAST"


def _load(config: Path | None = None) -> CoordinatorSettings:
    return CoordinatorSettings.load(config, "coordinator", insecure=True)


def _config(tmp_path: Path, value: str) -> Path:
    path = tmp_path / "coordinator.toml"
    path.write_text(f"[coordinator]\nmodel_keep_last = {value}\n")
    return path


def test_defaults_to_three_and_loads_from_env_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert _load().model_keep_last == DEFAULT_KEEP_LAST == 3
    config = _config(tmp_path, "2")
    assert _load(config).model_keep_last == 2
    monkeypatch.setenv(ENV, "5")
    assert _load().model_keep_last == 5
    assert _load(config).model_keep_last == 5  # the environment beats the file


@pytest.mark.parametrize("value", ["0", "-1", "2.5", '"three"', "true"])
def test_a_bad_value_in_the_file_is_refused_naming_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(SettingsError) as info:
        _load(_config(tmp_path, value))
    message = str(info.value)
    assert message.startswith("invalid setting model_keep_last: ") and "\n" not in message
    assert "1 or more" in message and ENV in message


@pytest.mark.parametrize("value", ["0", "three", ""])
def test_a_bad_value_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(ENV, value)
    with pytest.raises(SettingsError, match=f"invalid setting model_keep_last: .*{ENV}"):
        _load()


@pytest.mark.parametrize("keep_last", [1, 2, 4])
def test_a_runs_store_keeps_the_best_and_the_last_n_of_the_setting(
    tmp_path: Path, keep_last: int
) -> None:
    settings = CoordinatorSettings(state_dir=tmp_path, insecure=True, model_keep_last=keep_last)
    run_config = run_config_for(RunRequest(), 7, settings)
    assert run_config["model-keep-last"] == keep_last
    store = model_store_for(run_config)  # what the run's ServerApp builds from its config
    state = create_model("mlp").state_dict()
    for server_round, accuracy in enumerate([0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6], start=1):
        store.save(
            run_id=7,
            server_round=server_round,
            architecture="mlp",
            num_classes=10,
            state_dict=state,
            metrics={"eval-accuracy": accuracy},
        )
    index = store.index(7)
    assert index.keep_last == keep_last
    assert [v.round for v in index.versions] == [1, *range(8 - keep_last, 8)]
    assert sorted(p.name for p in store.run_dir(7).glob("round-*.pt")) == [
        f"round-{n:04d}.pt" for n in (1, *range(8 - keep_last, 8))
    ]
