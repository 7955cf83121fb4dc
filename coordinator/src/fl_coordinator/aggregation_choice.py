"""AggregationChoice: a run's aggregation, screening and privacy options, and its strategy.

``run_config_entries`` puts a RunRequest's options into the Flower run config (kebab-case;
null becomes 0, which the run config can hold); ``AggregationChoice.from_run_config`` reads
them back in the ServerApp, and ``build`` makes the Fleet strategy the run asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flwr.serverapp.strategy import FedAvg

from fl_coordinator.fleet_strategy import (
    FleetCentralDp,
    FleetFedAvg,
    FleetFedMedian,
    FleetFedTrimmedAvg,
    FleetKrum,
    FleetRounds,
)
from fl_coordinator.privacy_ledger import PrivacyLedger
from fl_coordinator.round_selection import RoundSelection
from fl_coordinator.update_screening import UpdateScreening
from fl_shared.wire import RunRequest

ConfigValue = bool | int | float | str


def run_config_entries(request: RunRequest) -> dict[str, ConfigValue]:
    """The request's robust-training options as run config entries (devices see them too)."""
    return {
        "aggregation": request.aggregation,
        "trimmed-avg-beta": float(request.trimmed_avg_beta),
        "krum-malicious-devices": request.krum_malicious_devices,
        "screening-mad-k": float(request.screening_mad_k or 0.0),
        "screening-max-norm": float(request.screening_max_norm or 0.0),
        "privacy": request.privacy,
        "dp-clipping-norm": float(request.dp_clipping_norm),
        "dp-noise-multiplier": float(request.dp_noise_multiplier),
        "dp-epsilon": float(request.dp_epsilon),
        "dp-sensitivity": float(request.dp_sensitivity or 2 * request.dp_clipping_norm),
        "dp-delta": float(request.dp_delta),
    }


def _positive_or_none(value: ConfigValue) -> float | None:
    number = float(value)
    return number if number > 0 else None


@dataclass(frozen=True)
class AggregationChoice:
    """What a run chose; the defaults are those of RunRequest."""

    aggregation: str = "fedavg"
    trimmed_avg_beta: float = 0.2
    krum_malicious_devices: int = 0
    screening_mad_k: float | None = 6.0
    screening_max_norm: float | None = None
    privacy: str = "none"
    dp_clipping_norm: float = 1.0
    dp_noise_multiplier: float = 1.0
    dp_epsilon: float = 1.0
    dp_sensitivity: float = 2.0
    dp_delta: float = 1e-5

    @classmethod
    def from_run_config(cls, cfg: Mapping[str, ConfigValue]) -> AggregationChoice:
        """Read the options back (a run config without them gets the defaults)."""
        defaults = cls()
        return cls(
            aggregation=str(cfg.get("aggregation", defaults.aggregation)),
            trimmed_avg_beta=float(cfg.get("trimmed-avg-beta", defaults.trimmed_avg_beta)),
            krum_malicious_devices=int(
                cfg.get("krum-malicious-devices", defaults.krum_malicious_devices)
            ),
            screening_mad_k=_positive_or_none(cfg.get("screening-mad-k", 6.0)),
            screening_max_norm=_positive_or_none(cfg.get("screening-max-norm", 0.0)),
            privacy=str(cfg.get("privacy", defaults.privacy)),
            dp_clipping_norm=float(cfg.get("dp-clipping-norm", defaults.dp_clipping_norm)),
            dp_noise_multiplier=float(cfg.get("dp-noise-multiplier", defaults.dp_noise_multiplier)),
            dp_epsilon=float(cfg.get("dp-epsilon", defaults.dp_epsilon)),
            dp_sensitivity=float(cfg.get("dp-sensitivity", defaults.dp_sensitivity)),
            dp_delta=float(cfg.get("dp-delta", defaults.dp_delta)),
        )

    def ledger(self, prior_releases: int = 0) -> PrivacyLedger | None:
        """The run's privacy ledger (None without differential privacy)."""
        if self.privacy == "central":
            return PrivacyLedger.central(
                noise_multiplier=self.dp_noise_multiplier,
                clipping_norm=self.dp_clipping_norm,
                delta=self.dp_delta,
                prior_releases=prior_releases,
            )
        if self.privacy == "local":
            return PrivacyLedger.local(
                epsilon=self.dp_epsilon,
                delta=self.dp_delta,
                sensitivity=self.dp_sensitivity,
                clipping_norm=self.dp_clipping_norm,
                prior_releases=prior_releases,
            )
        if self.privacy != "none":
            raise ValueError(f"unknown privacy mode {self.privacy!r}")
        return None

    def build(
        self,
        *,
        min_devices: int,
        device_wait_timeout_s: float,
        fraction_evaluate: float,
        run_id: int | None = None,
        prior_releases: int = 0,
        selection: RoundSelection | None = None,
    ) -> FleetRounds:
        """The strategy: Flower's class for the aggregation, with the fleet's rounds."""
        evaluate_nodes = min_devices if fraction_evaluate > 0 else 0
        screening = UpdateScreening(mad_k=self.screening_mad_k, max_norm=self.screening_max_norm)
        privacy = self.ledger(prior_releases)

        def fleet(cls: type[FleetRounds], **extra: object) -> FleetRounds:
            return cls(
                min_devices=min_devices,
                device_wait_timeout_s=device_wait_timeout_s,
                screening=screening,
                privacy=privacy,
                run_id=run_id,
                selection=selection,
                **extra,
            )

        if self.privacy == "central":
            if self.aggregation != "fedavg":
                raise ValueError("central differential privacy works with fedavg only")
            inner = FedAvg(
                min_train_nodes=min_devices,
                min_available_nodes=min_devices,
                fraction_evaluate=fraction_evaluate,
                min_evaluate_nodes=evaluate_nodes,
            )
            return fleet(
                FleetCentralDp,
                strategy=inner,
                noise_multiplier=self.dp_noise_multiplier,
                clipping_norm=self.dp_clipping_norm,
            )
        sampling = {"fraction_evaluate": fraction_evaluate, "min_evaluate_nodes": evaluate_nodes}
        if self.aggregation == "fedavg":
            return fleet(FleetFedAvg, **sampling)
        if self.aggregation == "fedmedian":
            return fleet(FleetFedMedian, **sampling)
        if self.aggregation == "fedtrimmedavg":
            return fleet(FleetFedTrimmedAvg, **sampling, beta=self.trimmed_avg_beta)
        if self.aggregation == "krum":
            return fleet(FleetKrum, **sampling, num_malicious_nodes=self.krum_malicious_devices)
        raise ValueError(f"unknown aggregation {self.aggregation!r}")
