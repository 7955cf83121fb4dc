"""SelectionReport: speedups with bootstrap intervals, the printed table and the accuracy plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# (faster candidate, baseline): the speedup is baseline TTA / candidate TTA.
COMPARISONS = (("capability", "random"), ("capability", "oort"), ("oort", "random"))
BOOTSTRAP_SAMPLES = 10_000


def geomean(values: Sequence[float]) -> float:
    return float(math.exp(np.mean(np.log(values)))) if len(values) else math.nan


def bootstrap_geomean(ratios: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the geometric mean, resampling the seeds."""
    logs = np.log(np.asarray(ratios, dtype=float))
    if len(logs) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = logs[rng.integers(0, len(logs), (BOOTSTRAP_SAMPLES, len(logs)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(math.exp(low)), float(math.exp(high))


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per alpha and policy: TTA, accuracy at the budget, never-selected share; speedups."""
    alphas = sorted({r["alpha"] for r in runs}, reverse=True)
    policies = [p for p in ("random", "oort", "capability") if any(r["policy"] == p for r in runs)]
    by_key = {(r["alpha"], r["policy"], r["seed"]): r for r in runs}
    per_policy: list[dict[str, Any]] = []
    speedups: list[dict[str, Any]] = []
    for alpha in alphas:
        for policy in policies:
            mine = [r for r in runs if r["alpha"] == alpha and r["policy"] == policy]
            per_policy.append(
                {
                    "alpha": alpha,
                    "policy": policy,
                    "target_accuracy": mine[0]["target_accuracy"],
                    "runs": len(mine),
                    "censored": sum(r["censored"] for r in mine),
                    "tta_geomean_s": geomean([r["tta_s"] for r in mine]),
                    "tta_median_s": float(np.median([r["tta_s"] for r in mine])),
                    "rounds_to_target_median": _median_or_none(
                        [r["rounds_to_target"] for r in mine if not r["censored"]]
                    ),
                    "median_round_s": float(np.median([r["median_round_s"] for r in mine])),
                    "budget_s": mine[0]["budget_s"],
                    "accuracy_at_budget_mean": float(
                        np.mean([r["accuracy_at_budget"] for r in mine])
                    ),
                    "runs_short_of_budget": sum(not r["budget_reached"] for r in mine),
                    "never_selected_share_mean": float(
                        np.mean([r["never_selected_share"] for r in mine])
                    ),
                    "never_selected_at_budget_mean": float(
                        np.mean([r["never_selected_share_at_budget"] for r in mine])
                    ),
                }
            )
    for alpha in [*alphas, "all"]:
        for fast, base in COMPARISONS:
            if fast not in policies or base not in policies:
                continue
            ratios, censored = [], 0
            for (a, policy, seed), run in by_key.items():
                if policy != fast or (alpha != "all" and a != alpha):
                    continue
                other = by_key.get((a, base, seed))
                if other is None:
                    continue
                ratios.append(other["tta_s"] / run["tta_s"])
                censored += run["censored"] or other["censored"]
            low, high = bootstrap_geomean(ratios)
            speedups.append(
                {
                    "alpha": alpha,
                    "comparison": f"{fast} vs {base}",
                    "pairs": len(ratios),
                    "pairs_with_censored_run": censored,
                    "speedup_geomean": geomean(ratios),
                    "ci95": [low, high],
                    "per_seed": ratios,
                }
            )
    return {"per_policy": per_policy, "speedups": speedups}


def _median_or_none(values: list[int]) -> float | None:
    return float(np.median(values)) if values else None


def table(summary: dict[str, Any]) -> str:
    """The summary as two plain-text tables."""
    lines = [
        f"{'alpha':>5} {'policy':<10} {'target':>6} {'TTA gmean s':>11} {'median':>8} "
        f"{'censored':>8} {'rounds':>6} {'round s':>7} {'acc@budget':>10} "
        f"{'never sel@budget':>16} {'never sel':>9}"
    ]
    for row in summary["per_policy"]:
        rounds = row["rounds_to_target_median"]
        rounds_text = "-" if rounds is None else f"{rounds:.0f}"
        lines.append(
            f"{row['alpha']:>5} {row['policy']:<10} {row['target_accuracy']:>6.2f} "
            f"{row['tta_geomean_s']:>11.0f} {row['tta_median_s']:>8.0f} "
            f"{row['censored']:>4}/{row['runs']:<3} {rounds_text:>6} "
            f"{row['median_round_s']:>7.1f} {row['accuracy_at_budget_mean']:>10.3f} "
            f"{row['never_selected_at_budget_mean']:>16.1%} "
            f"{row['never_selected_share_mean']:>9.1%}"
        )
    lines += [
        "",
        f"{'alpha':>5} {'speedup (TTA ratio)':<24} {'gmean':>6} {'95% CI':>15} {'cens':>5}",
    ]
    for row in summary["speedups"]:
        low, high = row["ci95"]
        interval = f"[{low:.2f}, {high:.2f}]"
        censored = f"{row['pairs_with_censored_run']}/{row['pairs']}"
        lines.append(
            f"{row['alpha']!s:>5} {row['comparison']:<24} {row['speedup_geomean']:>6.2f} "
            f"{interval:>15} {censored:>5}"
        )
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """Mean test accuracy vs virtual time per policy, one panel per alpha.

    Drawn up to the runs' horizon, where every run goes unless it ran out of rounds first;
    at each time the mean is over the runs still going, and a curve ends where fewer than
    half of its runs are.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alphas = sorted({r["alpha"] for r in runs}, reverse=True)
    fig, axes = plt.subplots(1, len(alphas), figsize=(6 * len(alphas), 4.2), squeeze=False)
    colors = {"random": "tab:gray", "oort": "tab:blue", "capability": "tab:red"}
    for ax, alpha in zip(axes[0], alphas, strict=True):
        mine = [r for r in runs if r["alpha"] == alpha]
        end = min(max(r["total_time_s"] for r in mine), mine[0]["horizon_s"])
        grid = np.linspace(0.0, end, 400)
        for policy, color in colors.items():
            theirs = [r for r in mine if r["policy"] == policy]
            if not theirs:
                continue
            curves = np.full((len(theirs), len(grid)), np.nan)
            for i, run in enumerate(theirs):
                times = np.asarray(run["times_s"])
                index = np.searchsorted(times, grid, side="right") - 1
                alive = grid <= times[-1]
                curves[i, alive] = np.asarray(run["accuracies"])[index[alive]]
            going = np.sum(~np.isnan(curves), axis=0)
            keep = going * 2 >= len(theirs)
            mean = np.nanmean(np.where(keep, curves, 0.0), axis=0)
            ax.plot(grid[keep], mean[keep], color=color, label=f"{policy} ({len(theirs)} runs)")
        ax.axhline(mine[0]["target_accuracy"], color="black", linestyle=":", linewidth=1)
        ax.axvline(mine[0]["budget_s"], color="black", linestyle="--", linewidth=0.8)
        ax.set_title(f"Dirichlet alpha = {alpha} (target {mine[0]['target_accuracy']:.2f})")
        ax.set_xlabel("simulated time (s)")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0.4, 0.9)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle("Device selection: mean accuracy vs simulated time (dashed: time budget)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
