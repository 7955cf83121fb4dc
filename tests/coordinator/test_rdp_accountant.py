"""RdpAccountant and PrivacyLedger: epsilons against closed forms and published numbers."""

from __future__ import annotations

import math

import pytest

from fl_coordinator.privacy_ledger import PrivacyLedger
from fl_coordinator.rdp_accountant import (
    RdpAccountant,
    epsilon_from_rdp,
    gaussian_noise_multiplier,
    gaussian_rdp,
)


def _epsilon(z: float, q: float, steps: int, delta: float) -> float:
    accountant = RdpAccountant()
    accountant.compose(z, q, steps)
    return accountant.epsilon(delta).epsilon


@pytest.mark.parametrize(("z", "steps"), [(1.0, 1), (1.0, 10), (4.0, 100), (0.7, 3)])
def test_the_gaussian_mechanism_matches_its_closed_form(z: float, steps: int) -> None:
    # q = 1: RDP(alpha) = steps * alpha / (2 z^2) exactly; the conversion of Canonne, Kamath
    # and Steinke (2020), minimised over the same integer orders, written out independently.
    delta = 1e-5
    expected = min(
        steps * a / (2 * z * z) + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1)
        for a in range(2, 64)
    )
    assert _epsilon(z, 1.0, steps, delta) == pytest.approx(expected, rel=1e-12)


# Computed with Google's dp-accounting 0.6.0: rdp.RdpAccountant(orders=[2..63, 80, 96, 128,
# 192, 256, 512, 1024]), composing GaussianDpEvent(z) (q = 1) or
# PoissonSampledDpEvent(q, GaussianDpEvent(z)) `steps` times, then get_epsilon(delta).
DP_ACCOUNTING = [
    ((1.0, 1.0, 1, 1e-5), 4.752728336819822),
    ((1.0, 1.0, 10, 1e-5), 19.801691480042894),
    ((4.0, 1.0, 100, 1e-5), 14.176691480042894),
    ((1.1, 0.01, 10_000, 1e-5), 5.6543080001495145),
    ((4.0, 0.01, 10_000, 1e-5), 1.0354900660362436),
    ((0.8, 0.1, 50, 1e-6), 10.70591098034756),
    ((2.0, 0.5, 20, 1e-5), 6.235225692712161),
]


@pytest.mark.parametrize(("case", "expected"), DP_ACCOUNTING)
def test_epsilons_match_dp_accounting(
    case: tuple[float, float, int, float], expected: float
) -> None:
    assert _epsilon(*case) == pytest.approx(expected, rel=1e-9)


def test_the_dp_sgd_papers_example_with_its_own_conversion() -> None:
    # Abadi et al. 2016, Sec. 3.1: q = 0.01, sigma = 4, delta = 1e-5, T = 10^4 gives
    # epsilon ~ 1.26 with the moments accountant (orders up to 32, eps = min RDP + log(1/d)/(a-1)).
    rdp = [10_000 * gaussian_rdp(4.0, 0.01, a) for a in range(2, 33)]
    moments = min(
        value + math.log(1e5) / (a - 1) for a, value in zip(range(2, 33), rdp, strict=True)
    )
    assert moments == pytest.approx(1.26, abs=0.005)
    # The tighter conversion we report spends less for the same releases.
    assert epsilon_from_rdp(tuple(range(2, 33)), rdp, 1e-5).epsilon < moments


def test_no_release_spends_nothing_and_more_releases_spend_more() -> None:
    accountant = RdpAccountant()
    assert accountant.epsilon(1e-5).epsilon == 0.0
    spent = []
    for _ in range(3):
        accountant.compose(1.0)
        spent.append(accountant.epsilon(1e-5).epsilon)
    assert spent[0] < spent[1] < spent[2] and accountant.releases == 3


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="noise_multiplier"):
        gaussian_rdp(0.0, 1.0, 2)
    with pytest.raises(ValueError, match="sampling_rate"):
        gaussian_rdp(1.0, 0.0, 2)
    with pytest.raises(ValueError, match="delta"):
        epsilon_from_rdp((2,), [1.0], 1.0)


def test_local_dp_is_the_gaussian_mechanism_of_flowers_local_dp_mod() -> None:
    # LocalDpMod: std = sensitivity * sqrt(2 ln(1.25 / delta)) / epsilon.
    assert gaussian_noise_multiplier(1.0, 1e-5) == pytest.approx(math.sqrt(2 * math.log(1.25e5)))
    ledger = PrivacyLedger.local(epsilon=0.5, delta=1e-5, sensitivity=2.0, clipping_norm=1.0)
    ledger.aggregate_released()  # not a local release
    assert ledger.spent().releases == 0
    for _ in range(4):
        ledger.round_sent()
    spent = ledger.spent()
    assert (spent.releases, spent.epsilon_per_round, spent.sensitivity) == (4, 0.5, 2.0)
    # RDP composition of 4 releases is no worse than basic composition (4 * 0.5 at 4 * delta).
    assert 0 < spent.epsilon < 2.0
    assert spent.epsilon == pytest.approx(_epsilon(spent.noise_multiplier, 1.0, 4, 1e-5))


def test_central_ledger_counts_releases_and_a_resumed_run_its_earlier_rounds() -> None:
    ledger = PrivacyLedger.central(noise_multiplier=1.1, clipping_norm=0.5, delta=1e-5)
    ledger.round_sent()  # sending the model releases nothing centrally
    ledger.aggregate_released()
    assert ledger.spent().releases == 1
    resumed = PrivacyLedger.central(
        noise_multiplier=1.1, clipping_norm=0.5, delta=1e-5, prior_releases=4
    )
    resumed.aggregate_released()
    spent = resumed.spent()
    assert (spent.releases, spent.sensitivity, spent.sampling_rate) == (5, 0.5, 1.0)
    assert spent.epsilon == pytest.approx(_epsilon(1.1, 1.0, 5, 1e-5))
