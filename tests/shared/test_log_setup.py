"""Tests for fl_shared.log_setup: one formatter for structlog and stdlib loggers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from fl_shared.log_setup import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def _log_exception(out: io.StringIO) -> str:
    try:
        1 / 0  # noqa: B018 - the exception is the point
    except ZeroDivisionError:
        structlog.get_logger("test").exception("step_failed", step=3)
    return out.getvalue()


def test_console_prints_the_traceback_as_python_does_without_rich() -> None:
    # format_exc_info renders the exception before the console renderer sees it, so
    # structlog's rich tracebacks are never used: a process without rich (the edge agent
    # keeps it out, fl_edge_agent.launcher) logs exactly the same.
    out = io.StringIO()
    configure_logging(json_output=False, stream=out)

    text = _log_exception(out)

    assert "step_failed" in text
    assert "step=3" in text
    assert "Traceback (most recent call last):" in text
    assert "ZeroDivisionError: division by zero" in text
    assert "╭" not in text  # no rich panel


def test_json_output_carries_the_traceback_in_one_record() -> None:
    out = io.StringIO()
    configure_logging(json_output=True, stream=out)

    record = json.loads(_log_exception(out))

    assert record["event"] == "step_failed"
    assert record["step"] == 3
    assert "ZeroDivisionError" in record["exception"]


def test_stdlib_loggers_share_the_formatter() -> None:
    out = io.StringIO()
    configure_logging(json_output=True, stream=out)

    logging.getLogger("flwr").warning("from flower")

    record = json.loads(out.getvalue())
    assert record["event"] == "from flower"
    assert record["logger"] == "flwr"
    assert record["level"] == "warning"
