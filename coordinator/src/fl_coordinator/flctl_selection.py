"""`flctl runs show`'s device selection: the run's policy, and who was selected each round."""

from __future__ import annotations

from typing import Any, TextIO

from fl_coordinator.flctl_output import fmt


def selection_summary(req: dict[str, Any]) -> str:
    """One line: the run's policy and how many devices a round takes."""
    policy = req.get("selection", "capability")
    per_round = req.get("devices_per_round")
    if per_round is None:
        return f"selection {policy}, every eligible device each round"
    return (
        f"selection {policy}, {per_round} updates per round "
        f"(over-commit x{req.get('overcommit', 1.3)})"
    )


def print_selection(rounds: list[dict[str, Any]], out: TextIO) -> None:
    """Per round: the devices selected and those left out, with the deciding factor."""
    shown = [r for r in sorted(rounds, key=lambda r: r["round"]) if r.get("selection")]
    if not shown:
        return
    out.write("selection (+ selected, - not; score, predicted seconds, why):\n")
    for round_ in shown:
        out.write(f"  round {round_['round']}:\n")
        decisions = sorted(round_["selection"], key=lambda d: (not d["selected"], d["device_id"]))
        for d in decisions:
            mark = "+" if d["selected"] else "-"
            out.write(
                f"    {mark} {d['device_id']}  score {fmt(d.get('score'))}  "
                f"predicted {fmt(d.get('predicted_s'), 1)} s  {d['reason']}\n"
            )
