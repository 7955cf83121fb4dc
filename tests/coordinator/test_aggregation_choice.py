"""AggregationChoice: run config round trip, and the Flower class each choice builds."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedMedian,
    FedTrimmedAvg,
    Krum,
)

from fl_coordinator.aggregation_choice import AggregationChoice, run_config_entries
from fl_coordinator.fleet_strategy import FleetRounds
from fl_coordinator.run_service import run_config_for
from fl_coordinator.settings import CoordinatorSettings
from fl_shared.wire import RunRequest


def _build(choice: AggregationChoice) -> FleetRounds:
    return choice.build(min_devices=5, device_wait_timeout_s=3.0, fraction_evaluate=0.5, run_id=1)


@pytest.mark.parametrize(
    ("aggregation", "flower_class"),
    [
        ("fedavg", FedAvg),
        ("fedmedian", FedMedian),
        ("fedtrimmedavg", FedTrimmedAvg),
        ("krum", Krum),
    ],
)
def test_each_aggregation_is_flowers_class_with_the_fleets_rounds(
    aggregation: str, flower_class: type
) -> None:
    strategy = _build(AggregationChoice(aggregation=aggregation))
    assert isinstance(strategy, flower_class) and isinstance(strategy, FleetRounds)
    assert isinstance(strategy, FedAvg)
    assert (strategy.min_train_nodes, strategy.min_available_nodes) == (5, 5)
    assert (strategy.fraction_evaluate, strategy.min_evaluate_nodes) == (0.5, 5)
    assert strategy.privacy is None and strategy.screening.mad_k == 6.0


def test_aggregation_parameters_reach_flowers_classes() -> None:
    trimmed = _build(AggregationChoice(aggregation="fedtrimmedavg", trimmed_avg_beta=0.3))
    assert isinstance(trimmed, FedTrimmedAvg) and trimmed.beta == 0.3
    krum = _build(AggregationChoice(aggregation="krum", krum_malicious_devices=1))
    assert isinstance(krum, Krum) and krum.num_malicious_nodes == 1
    assert krum.num_nodes_to_select == 1
    screened = _build(AggregationChoice(screening_mad_k=None, screening_max_norm=4.0))
    assert (screened.screening.mad_k, screened.screening.max_norm) == (None, 4.0)


def test_central_dp_wraps_a_fedavg_in_flowers_server_side_clipping() -> None:
    strategy = _build(
        AggregationChoice(privacy="central", dp_clipping_norm=0.5, dp_noise_multiplier=1.2)
    )
    assert isinstance(strategy, DifferentialPrivacyServerSideFixedClipping)
    assert isinstance(strategy.strategy, FedAvg)
    assert (strategy.clipping_norm, strategy.noise_multiplier) == (0.5, 1.2)
    assert strategy.strategy.min_train_nodes == 5 and strategy.strategy.fraction_evaluate == 0.5
    assert strategy.privacy is not None and strategy.privacy.mechanism == "central-gaussian"
    with pytest.raises(ValueError, match="fedavg only"):
        _build(AggregationChoice(privacy="central", aggregation="krum"))


def test_local_dp_keeps_the_aggregation_and_keeps_a_ledger() -> None:
    strategy = _build(AggregationChoice(aggregation="fedmedian", privacy="local"))
    assert isinstance(strategy, FedMedian)
    assert strategy.privacy is not None and strategy.privacy.mechanism == "local-gaussian"


def test_the_run_config_carries_the_choice_to_the_server_app(tmp_path: Path) -> None:
    request = RunRequest(
        aggregation="krum",
        min_devices=5,
        krum_malicious_devices=1,
        screening_mad_k=None,
        screening_max_norm=3.5,
        privacy="local",
        dp_clipping_norm=0.5,
        dp_epsilon=4.0,
    )
    config = run_config_for(request, 3, CoordinatorSettings(state_dir=tmp_path, insecure=True))
    assert all("_" not in key for key in config)
    assert config["screening-mad-k"] == 0.0  # the run config holds no null
    assert config["dp-sensitivity"] == 1.0  # default: twice the clipping norm
    choice = AggregationChoice.from_run_config(config)
    assert choice == AggregationChoice(
        aggregation="krum",
        krum_malicious_devices=1,
        screening_mad_k=None,
        screening_max_norm=3.5,
        privacy="local",
        dp_clipping_norm=0.5,
        dp_epsilon=4.0,
        dp_sensitivity=1.0,
    )


def test_a_run_config_without_the_options_gets_the_defaults() -> None:
    assert AggregationChoice.from_run_config({}) == AggregationChoice()
    assert (
        AggregationChoice.from_run_config(run_config_entries(RunRequest())) == AggregationChoice()
    )
