"""flctl's tables: plain columns off a terminal, coloured state words on one."""

from __future__ import annotations

import io
import re

import pytest

from fl_coordinator.flctl_output import table

HEADERS = ("DEVICE", "NAME", "STATUS", "ACCURACY")
ROWS = [("dev-1", "[lab] a", "online", "0.8000"), ("dev-22", None, "revoked", "-")]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_rows_are_plain_columns() -> None:
    out = io.StringIO()
    table(ROWS, HEADERS, out)
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue()
    assert lines[0].split() == list(HEADERS)
    assert set(lines[1]) == {"─"}
    assert lines[2].split() == ["dev-1", "[lab]", "a", "online", "0.8000"]  # no rich markup
    assert lines[3].split() == ["dev-22", "revoked", "-"]
    assert all(line == line.rstrip() for line in lines)
    assert lines[2].endswith("0.8000") and lines[3].endswith("     -")  # numbers to the right


def test_off_a_terminal_a_long_row_stays_on_one_line() -> None:
    out = io.StringIO()
    table([("dev-1", "x" * 500, "online", "1")], HEADERS, out)
    assert len(out.getvalue().splitlines()) == 3 and "x" * 500 in out.getvalue()


def test_no_rows_prints_the_headers() -> None:
    out = io.StringIO()
    table([], HEADERS, out)
    assert out.getvalue().splitlines()[0].split() == list(HEADERS)


def test_on_a_terminal_states_are_coloured_words_and_rows_fit_its_width(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("NO_COLOR", "COLORTERM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "40")
    out = _Terminal()
    table([*ROWS, ("dev-3", "y" * 60, "stale", "0.5")], HEADERS, out)
    text = out.getvalue()
    assert "\x1b[32monline" in text  # green, and still the word
    assert "\x1b[1;31mrevoked" in text
    assert "\x1b[33mstale" in text
    assert "\x1b[1mDEVICE" in text  # bold headers
    assert "\x1b[32mdev-1" not in text  # only the STATUS column is coloured
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert all(len(line) <= 40 for line in plain.splitlines())  # folded to the terminal's width
    assert "".join(re.findall(r"y+", plain)) == "y" * 60  # folded, not cut
