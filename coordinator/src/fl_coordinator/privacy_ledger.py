"""PrivacyLedger: counts a run's differentially private releases and reports their budget.

Central DP: one release per round whose noised aggregate was made; local DP: one per round
whose model was sent to the devices (each device noised its own update with LocalDpMod).
Both are Gaussian mechanisms, composed with ``RdpAccountant``. The result goes into every
``RoundReport.privacy``, so a run shows the budget spent so far (docs/robust-training.md).
"""

from __future__ import annotations

from typing import Literal

from fl_coordinator.rdp_accountant import RdpAccountant, gaussian_noise_multiplier
from fl_shared.wire import PrivacySpent

# Our rounds send the model to every eligible device: no random sampling, no amplification.
SAMPLING_RATE = 1.0


class PrivacyLedger:
    """The privacy budget of one run, release by release."""

    def __init__(
        self,
        *,
        mechanism: Literal["central-gaussian", "local-gaussian"],
        noise_multiplier: float,
        clipping_norm: float,
        sensitivity: float,
        delta: float,
        epsilon_per_round: float | None = None,
        prior_releases: int = 0,
    ) -> None:
        self.mechanism = mechanism
        self.noise_multiplier = noise_multiplier
        self.clipping_norm = clipping_norm
        self.sensitivity = sensitivity
        self.delta = delta
        self.epsilon_per_round = epsilon_per_round
        self._accountant = RdpAccountant()
        # A resumed run spent its earlier rounds' budget already (counted as released).
        self._accountant.compose(noise_multiplier, SAMPLING_RATE, prior_releases)

    @classmethod
    def central(
        cls, *, noise_multiplier: float, clipping_norm: float, delta: float, prior_releases: int = 0
    ) -> PrivacyLedger:
        """Server-side clipping and noise with std ``noise_multiplier * clipping_norm``.

        One device added to or removed from the sum moves it by at most the clipping norm.
        """
        return cls(
            mechanism="central-gaussian",
            noise_multiplier=noise_multiplier,
            clipping_norm=clipping_norm,
            sensitivity=clipping_norm,
            delta=delta,
            prior_releases=prior_releases,
        )

    @classmethod
    def local(
        cls,
        *,
        epsilon: float,
        delta: float,
        sensitivity: float,
        clipping_norm: float,
        prior_releases: int = 0,
    ) -> PrivacyLedger:
        """LocalDpMod on each device: noise std ``sensitivity * sqrt(2 ln(1.25/delta)) / eps``.

        Relative to its sensitivity that is the noise multiplier of the release; a device's
        budget is that of one such release per round it is sent the model.
        """
        return cls(
            mechanism="local-gaussian",
            noise_multiplier=gaussian_noise_multiplier(epsilon, delta),
            clipping_norm=clipping_norm,
            sensitivity=sensitivity,
            delta=delta,
            epsilon_per_round=epsilon,
            prior_releases=prior_releases,
        )

    def round_sent(self) -> None:
        """The model went out for training: with local DP every device may release once."""
        if self.mechanism == "local-gaussian":
            self._accountant.compose(self.noise_multiplier, SAMPLING_RATE)

    def aggregate_released(self) -> None:
        """A noised aggregate was made (central DP)."""
        if self.mechanism == "central-gaussian":
            self._accountant.compose(self.noise_multiplier, SAMPLING_RATE)

    def spent(self) -> PrivacySpent:
        """The budget spent so far, at this run's delta."""
        epsilon = self._accountant.epsilon(self.delta)
        return PrivacySpent(
            mechanism=self.mechanism,
            epsilon=epsilon.epsilon,
            delta=self.delta,
            releases=self._accountant.releases,
            noise_multiplier=self.noise_multiplier,
            clipping_norm=self.clipping_norm,
            sensitivity=self.sensitivity,
            sampling_rate=SAMPLING_RATE,
            epsilon_per_round=self.epsilon_per_round,
        )
