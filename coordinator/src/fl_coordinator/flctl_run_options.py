"""`flctl runs start` flags that are RunRequest fields of the same name, sent only when given.

Each flag is one ``WireFlag`` row (``--trimmed-avg-beta`` → ``trimmed_avg_beta``); its help is
the field's description with the coordinator's default. A flag left out is absent from the
request, so the coordinator's own defaults (and a newer coordinator's) apply.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from fl_shared.wire import Accelerator, Aggregation, PrivacyMode, RunRequest, SelectionPolicy


def number(text: str) -> float:
    """A finite float (NaN and infinity are not JSON, and no field takes them)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def number_or_off(text: str) -> float | None:
    """A finite float, or ``off`` (sent as null: the rule is turned off)."""
    return None if text.strip().lower() == "off" else number(text)


@dataclass(frozen=True)
class WireFlag:
    """One flag for one RunRequest field."""

    field: str
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    what: str = ""  # the help text, when not the field's description
    default: str = ""  # the default as shown, when not the field's default

    def help(self) -> str:
        """The field's description (or ``what``) with the coordinator's default."""
        info = RunRequest.model_fields[self.field]
        shown = self.default or ("off" if info.default is None else str(info.default))
        text = self.what or info.description or ""
        return f"{text} (default: {shown})".replace("%", "%%")


ROBUST_FLAGS = (
    WireFlag("aggregation", choices=get_args(Aggregation), what="how updates are combined"),
    WireFlag("trimmed_avg_beta", number, metavar="BETA"),
    WireFlag("krum_malicious_devices", int, metavar="F"),
    WireFlag(
        "screening_mad_k",
        number_or_off,
        metavar="K|off",
        what="reject updates whose L2 norm exceeds median + k * MAD of the round's norms "
        "(from 3 replies on); off turns this rule off",
    ),
    WireFlag("screening_max_norm", number_or_off, metavar="NORM|off"),
    WireFlag(
        "privacy",
        choices=get_args(PrivacyMode),
        what="differential privacy: central (noise on the coordinator; needs --aggregation "
        "fedavg) or local (noise on each device)",
    ),
    WireFlag("dp_clipping_norm", number, metavar="C"),
    WireFlag("dp_noise_multiplier", number, metavar="Z"),
    WireFlag("dp_epsilon", number, metavar="EPS"),
    WireFlag(
        "dp_sensitivity",
        number,
        metavar="DELTA_L2",
        what="local: L2 sensitivity of a device's update",
        default="2 * --dp-clipping-norm",
    ),
    WireFlag("dp_delta", number, metavar="DELTA"),
)

SELECTION_FLAGS = (
    WireFlag("selection", choices=get_args(SelectionPolicy)),
    WireFlag("devices_per_round", int, metavar="K", default="all"),
    WireFlag("overcommit", number, metavar="FACTOR"),
    WireFlag("max_staleness_rounds", int, metavar="ROUNDS"),
    WireFlag("min_memory_mb", int, metavar="MB"),
    WireFlag("required_accelerator", choices=get_args(Accelerator)),
)


def add_wire_flags(parser: argparse.ArgumentParser, title: str, flags: Sequence[WireFlag]) -> None:
    """Add ``flags`` as a group; each is absent from the parsed args unless given."""
    group = parser.add_argument_group(title)
    for flag in flags:
        options: dict[str, Any] = {"choices": flag.choices, "metavar": flag.metavar}
        if flag.type is not None:
            options["type"] = flag.type
        group.add_argument(
            "--" + flag.field.replace("_", "-"),
            default=argparse.SUPPRESS,
            help=flag.help(),
            **options,
        )


def given(args: argparse.Namespace, flags: Sequence[WireFlag]) -> dict[str, Any]:
    """The fields of ``flags`` the user gave, by RunRequest's names."""
    return {f.field: getattr(args, f.field) for f in flags if hasattr(args, f.field)}
