"""Helpers shared by the flctl command groups: rich tables, number formatting, durations."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, TextIO

# No lazy import to save start-up time: httpx (flctl_api) already imports rich.console and
# rich.table for its own command line whenever rich is installed.
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fl_coordinator.flctl_api import EXIT_USAGE, CliError

# Columns whose words are states; on a terminal they get a colour, and always stay words.
BADGE_COLUMNS = frozenset({"STATUS", "SUPERNODE"})
BADGE_STYLES = {
    "online": "green",
    "completed": "green",
    "running": "cyan",
    "starting": "cyan",
    "pending": "cyan",
    "stale": "yellow",
    "drained": "yellow",
    "restarting": "yellow",
    "stopped": "yellow",
    "offline": "red",
    "failed": "bold red",
    "crashed": "bold red",
    "revoked": "bold red",
}
# Off a terminal nothing wraps: a line per row, whatever its length, for grep and awk.
_UNWRAPPED_WIDTH = 100_000
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def _numeric(cells: Sequence[str]) -> bool:
    values = [c for c in cells if c not in ("", "-")]
    return bool(values) and all(_NUMBER.fullmatch(c) for c in values)


def table(rows: Sequence[Sequence[object]], headers: Sequence[str], out: TextIO) -> None:
    """Print ``rows`` under ``headers`` as a table for people.

    On a terminal: its width, bold headers, coloured state words. Anywhere else (a pipe, a file,
    a test's StringIO): no escape codes and no wrapping, so a row is one line of columns that
    ``split()`` or ``awk`` can read.
    """
    tty = out.isatty()
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    grid = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        header_style="bold" if tty else "",
    )
    for i, header in enumerate(headers):
        column = [row[i] for row in cells]
        grid.add_column(header, justify="right" if _numeric(column) else "left", overflow="fold")
    badges = {i for i, header in enumerate(headers) if header in BADGE_COLUMNS}
    for row in cells:
        # Text, not str: a device name like "[lab]" is data, never rich markup.
        grid.add_row(
            *(
                Text(c, style=BADGE_STYLES.get(c, "") if i in badges and tty else "")
                for i, c in enumerate(row)
            )
        )
    console = Console(
        file=out,
        width=None if tty else _UNWRAPPED_WIDTH,
        force_terminal=tty,
        color_system="auto" if tty else None,
        markup=False,
        emoji=False,
        highlight=False,
    )
    with console.capture() as captured:
        console.print(grid)
    # rich pads every cell to its column's width; trailing blanks only get in a script's way.
    out.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def fmt(value: object, digits: int = 4) -> str:
    return (
        f"{value:.{digits}f}"
        if isinstance(value, float)
        else ("-" if value is None else str(value))
    )


def dump_json(value: Any, out: TextIO) -> None:
    """Print ``value`` as indented JSON with a final newline (for scripts)."""
    json.dump(value, out, indent=2)
    out.write("\n")


def duration_seconds(text: str, option: str = "--expires") -> float:
    """Seconds in a duration such as ``30m``, ``24h`` or ``7d``; a CliError naming ``option``."""
    number, unit = text[:-1], text[-1:]
    if unit not in _UNITS or not number.replace(".", "", 1).isdigit() or float(number) <= 0:
        raise CliError(f"{option} {text!r}: use a number with s, m, h or d, e.g. 24h", EXIT_USAGE)
    return float(number) * _UNITS[unit]
