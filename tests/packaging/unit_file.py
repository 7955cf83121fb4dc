"""parse_unit: a systemd unit file as (section, key) -> values, for the packaging tests."""

from __future__ import annotations

from collections import defaultdict

Unit = dict[tuple[str, str], list[str]]


def parse_unit(text: str) -> Unit:
    """(section, key) -> every value assigned, in order, as systemd reads repeated keys."""
    unit: Unit = defaultdict(list)
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        unit[(section, key.strip())].append(value.strip())
    return dict(unit)
