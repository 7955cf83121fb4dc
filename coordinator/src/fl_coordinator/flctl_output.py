"""Output helpers shared by the flctl command groups: plain tables and number formatting."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO


def table(rows: Sequence[Sequence[object]], headers: Sequence[str], out: TextIO) -> None:
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


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
