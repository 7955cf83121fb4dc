"""RdpAccountant: the (epsilon, delta) spent by repeated (subsampled) Gaussian releases.

Rényi-DP accounting as in TF-Privacy, Opacus and Google's dp-accounting, written out here
(a few lines of numpy) so the coordinator needs no extra dependency:

- one release of the Gaussian mechanism with noise multiplier ``z`` (noise std divided by
  the L2 sensitivity) is ``(alpha, alpha / (2 z^2))``-RDP for every order ``alpha > 1``
  (Mironov 2017, Prop. 7);
- with Poisson sampling of rate ``q`` < 1, the RDP at integer orders is computed exactly
  from the binomial expansion of Mironov, Talwar and Zhang (2019, Sec. 3.3) in log space;
- RDP adds up over releases, and is turned into ``(epsilon, delta)``-DP with the conversion
  of Canonne, Kamath and Steinke (2020, Prop. 12), minimised over the orders.

tests/coordinator/test_rdp_accountant.py checks it against the closed form and against
numbers from dp-accounting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Integer orders, as TF-Privacy's defaults reach: enough for epsilons from ~0.01 to ~100.
DEFAULT_ORDERS: tuple[int, ...] = (*range(2, 64), 80, 96, 128, 192, 256, 512, 1024)


@dataclass(frozen=True)
class Epsilon:
    """The result of a conversion: epsilon at delta, and the order that gave it."""

    epsilon: float
    delta: float
    order: float


def gaussian_rdp(noise_multiplier: float, sampling_rate: float, order: int) -> float:
    """RDP at one integer ``order`` of one (Poisson-subsampled) Gaussian release."""
    if noise_multiplier <= 0 or not math.isfinite(noise_multiplier):
        raise ValueError("noise_multiplier must be positive and finite")
    if not 0 < sampling_rate <= 1:
        raise ValueError("sampling_rate must be in (0, 1]")
    if order < 2 or int(order) != order:
        raise ValueError("order must be an integer >= 2")
    sigma2 = noise_multiplier**2
    if sampling_rate == 1.0:
        return order / (2 * sigma2)
    # log A_alpha = log sum_k C(alpha, k) (1-q)^(alpha-k) q^k exp((k^2 - k) / (2 sigma^2))
    k = np.arange(order + 1, dtype=np.float64)
    log_binom = (
        math.lgamma(order + 1)
        - np.array([math.lgamma(x + 1) for x in k])
        - np.array([math.lgamma(order - x + 1) for x in k])
    )
    terms = (
        log_binom
        + (order - k) * math.log1p(-sampling_rate)
        + k * math.log(sampling_rate)
        + (k * k - k) / (2 * sigma2)
    )
    top = float(np.max(terms))
    log_a = top + math.log(float(np.sum(np.exp(terms - top))))
    return log_a / (order - 1)


def epsilon_from_rdp(orders: tuple[int, ...], rdp: list[float], delta: float) -> Epsilon:
    """The smallest epsilon at ``delta`` over the orders (Canonne, Kamath, Steinke 2020)."""
    if not 0 < delta < 1:
        raise ValueError("delta must be in (0, 1)")
    best = Epsilon(math.inf, delta, math.nan)
    for order, value in zip(orders, rdp, strict=True):
        eps = value + math.log1p(-1 / order) - (math.log(delta) + math.log(order)) / (order - 1)
        if eps < best.epsilon:
            best = Epsilon(max(0.0, eps), delta, float(order))
    return best


class RdpAccountant:
    """Composes Gaussian releases; ``epsilon(delta)`` is the budget spent so far."""

    def __init__(self, orders: tuple[int, ...] = DEFAULT_ORDERS) -> None:
        self.orders = orders
        self.releases = 0
        self._rdp = [0.0] * len(orders)

    def compose(self, noise_multiplier: float, sampling_rate: float = 1.0, count: int = 1) -> None:
        """Add ``count`` releases with this noise multiplier and sampling rate."""
        if count < 0:
            raise ValueError("count must be >= 0")
        for i, order in enumerate(self.orders):
            self._rdp[i] += count * gaussian_rdp(noise_multiplier, sampling_rate, order)
        self.releases += count

    def epsilon(self, delta: float) -> Epsilon:
        """Cumulative epsilon at ``delta`` (0 before any release)."""
        if self.releases == 0:
            return Epsilon(0.0, delta, math.nan)
        return epsilon_from_rdp(self.orders, self._rdp, delta)


def gaussian_noise_multiplier(epsilon: float, delta: float) -> float:
    """The noise multiplier of the classic (epsilon, delta) Gaussian mechanism.

    sqrt(2 ln(1.25 / delta)) / epsilon (Dwork and Roth 2014, Thm. A.1): what Flower's
    LocalDpMod uses for its noise std, divided by the sensitivity.
    """
    return math.sqrt(2 * math.log(1.25 / delta)) / epsilon
