"""UpdateScreening: keeps poisoned or broken model updates out of a round's aggregation.

A reply is rejected when its arrays hold a NaN or an infinity, when it cannot be aggregated
(arrays that do not match the global model, no usable ``num-examples``), when the L2 norm
of its update (reply arrays minus the round's global arrays) is above an absolute cap, or
when that norm is far above the round's others: above ``median + k * MAD`` of the norms,
from three usable replies on. The round goes on with the rest. docs/robust-training.md
says what this catches and what it does not.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message

from fl_shared.wire import RejectedUpdate, RejectionReason

DEVICE_RECORD = "device"
WEIGHT_KEY = "num-examples"
# The outlier rule needs a distribution: with fewer usable replies only the other checks apply.
MIN_REPLIES_FOR_OUTLIERS = 3
# With 3-4 devices the MAD can be ~0 (two nearly equal norms); spreads below this fraction of
# the median count as this fraction, so honest devices a little apart are not rejected.
MAD_FLOOR = 0.25


@dataclass(frozen=True)
class ScreeningResult:
    """The replies to aggregate, and those left out with why."""

    kept: list[Message]
    rejected: list[RejectedUpdate]
    # L2 norm of each kept update, by the replying node.
    norms: dict[int, float]


def _device_id(msg: Message) -> str:
    device = msg.content.config_records.get(DEVICE_RECORD, ConfigRecord())
    return str(device.get("device-id", ""))[:64]


def _reject(
    msg: Message,
    reason: RejectionReason,
    detail: str,
    norm: float | None = None,
    limit: float | None = None,
) -> RejectedUpdate:
    return RejectedUpdate(
        device_id=_device_id(msg),
        node_id=int(msg.metadata.src_node_id),
        reason=reason,
        norm=norm if norm is not None and math.isfinite(norm) else None,
        limit=limit,
        detail=detail[:500],
    )


def _global_arrays(arrays: ArrayRecord) -> dict[str, np.ndarray]:
    return {key: np.asarray(array.numpy()) for key, array in arrays.items()}


class UpdateScreening:
    """The screening rule of one run; ``screen()`` applies it to one round's replies."""

    def __init__(self, *, mad_k: float | None = 6.0, max_norm: float | None = None) -> None:
        if mad_k is not None and not mad_k > 0:
            raise ValueError("mad_k must be positive (None turns the outlier rule off)")
        if max_norm is not None and not max_norm > 0:
            raise ValueError("max_norm must be positive (None: no cap)")
        self.mad_k = mad_k
        self.max_norm = max_norm

    def screen(self, replies: Iterable[Message], global_arrays: ArrayRecord) -> ScreeningResult:
        """Split the round's content-carrying replies into kept and rejected ones.

        Error replies are neither: they are failures, which Flower logs and skips.
        """
        reference = _global_arrays(global_arrays)
        rejected: list[RejectedUpdate] = []
        norms: dict[int, float] = {}
        usable: list[Message] = []
        for msg in replies:
            if msg.has_error():
                continue
            problem = self._check(msg, reference)
            if isinstance(problem, RejectedUpdate):
                rejected.append(problem)
            else:
                norms[id(msg)] = problem
                usable.append(msg)
        usable, malformed = _same_metric_keys(usable)
        rejected += malformed
        limit = self._outlier_limit([norms[id(m)] for m in usable])
        kept: list[Message] = []
        for msg in usable:
            norm = norms[id(msg)]
            if self.max_norm is not None and norm > self.max_norm:
                rejected.append(
                    _reject(
                        msg,
                        "norm-above-cap",
                        f"update norm {norm:.4g} above the cap {self.max_norm:.4g}",
                        norm,
                        self.max_norm,
                    )
                )
            elif limit is not None and norm > limit:
                rejected.append(
                    _reject(
                        msg,
                        "norm-outlier",
                        f"update norm {norm:.4g} above median + {self.mad_k:g} * MAD "
                        f"= {limit:.4g} of the round's {len(usable)} updates",
                        norm,
                        limit,
                    )
                )
            else:
                kept.append(msg)
        return ScreeningResult(
            kept=kept,
            rejected=rejected,
            norms={int(m.metadata.src_node_id): norms[id(m)] for m in kept},
        )

    def _outlier_limit(self, norms: list[float]) -> float | None:
        """median + k * MAD of the norms (MAD at least MAD_FLOOR * median); None: no rule."""
        if self.mad_k is None or len(norms) < MIN_REPLIES_FOR_OUTLIERS:
            return None
        values = np.asarray(norms, dtype=np.float64)
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median)))
        return median + self.mad_k * max(mad, MAD_FLOOR * median)

    @staticmethod
    def _check(msg: Message, reference: dict[str, np.ndarray]) -> float | RejectedUpdate:
        """The update's L2 norm, or why the reply cannot be aggregated."""
        content = msg.content
        if len(content.array_records) != 1:
            count = len(content.array_records)
            return _reject(msg, "malformed", f"{count} ArrayRecords, expected exactly one")
        if len(content.metric_records) != 1:
            count = len(content.metric_records)
            return _reject(msg, "malformed", f"{count} MetricRecords, expected exactly one")
        weight = next(iter(content.metric_records.values())).get(WEIGHT_KEY)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not math.isfinite(weight)
            or weight <= 0
        ):
            return _reject(msg, "malformed", f"'{WEIGHT_KEY}' is {weight!r}, not a positive number")
        record = next(iter(content.array_records.values()))
        if set(record.keys()) != set(reference):
            return _reject(msg, "malformed", "its arrays do not match the global model's keys")
        squares = 0.0
        for key, expected in reference.items():
            array = np.asarray(record[key].numpy())
            if array.shape != expected.shape:
                return _reject(
                    msg,
                    "malformed",
                    f"array {key!r} has shape {array.shape}, the model's is {expected.shape}",
                )
            if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
                return _reject(msg, "non-finite", f"array {key!r} holds NaN or infinity")
            update = array.astype(np.float64) - expected.astype(np.float64)
            squares += float(np.dot(update.ravel(), update.ravel()))
        norm = math.sqrt(squares)
        if not math.isfinite(norm):  # finite arrays, but too large to measure
            return _reject(msg, "non-finite", "update norm overflows")
        return norm


def _same_metric_keys(replies: list[Message]) -> tuple[list[Message], list[RejectedUpdate]]:
    """Flower refuses to aggregate replies whose metric keys differ: keep the usual set."""
    if len(replies) < 2:
        return replies, []
    keys = [frozenset(next(iter(m.content.metric_records.values())).keys()) for m in replies]
    usual, _count = Counter(keys).most_common(1)[0]
    kept = [m for m, k in zip(replies, keys, strict=True) if k == usual]
    rejected = [
        _reject(m, "malformed", "its metrics have other keys than the round's other replies")
        for m, k in zip(replies, keys, strict=True)
        if k != usual
    ]
    return kept, rejected
