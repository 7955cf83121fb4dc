"""local_dp_mod: Flower's LocalDpMod on the training replies of runs that ask for local DP.

Flower configures a LocalDpMod once, on the ClientApp object; ours serves every run, so this
mod reads the run's choice from its run config (``privacy = "local"`` and the ``dp-*`` keys
that the coordinator's run_service writes) and applies a LocalDpMod with those parameters:
the update (reply minus the received model) is clipped to ``dp-clipping-norm`` and Gaussian
noise of std ``dp-sensitivity * sqrt(2 ln(1.25 / dp-delta)) / dp-epsilon`` is added to every
parameter before the reply leaves the device. Other runs pass through untouched.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp.mod import LocalDpMod
from flwr.clientapp.typing import ClientAppCallable


def local_dp_settings(context: Context) -> LocalDpMod | None:
    """The LocalDpMod this run asks for; None when it does not ask for local DP."""
    run = context.run_config
    if str(run.get("privacy", "none")) != "local":
        return None
    clipping_norm = float(run["dp-clipping-norm"])
    return LocalDpMod(
        clipping_norm=clipping_norm,
        sensitivity=float(run.get("dp-sensitivity", 2 * clipping_norm)),
        epsilon=float(run["dp-epsilon"]),
        delta=float(run["dp-delta"]),
    )


def local_dp_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """A ClientApp mod: local DP on this reply when the run asks for it."""
    mod = local_dp_settings(context)
    if mod is None:
        return call_next(msg, context)
    return mod(msg, context, call_next)
