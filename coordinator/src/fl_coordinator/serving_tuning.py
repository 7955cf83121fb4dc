"""Interpreter settings for a serving coordinator: steady latency under heartbeat load.

Two measured causes of 100+ ms stalls at a few thousand heartbeats/s (bench/heartbeat_ingest.py):

- full garbage collections walking every object made at start-up (FastAPI, SQLAlchemy,
  pydantic, OpenTelemetry: hundreds of thousands of them) although none of them will die:
  ``gc.freeze()`` once the app is built moves them out of the collector's sight;
- the heartbeat writer thread holding the GIL for CPython's default 5 ms switch interval while
  the event loop waits: 1 ms lets the loop answer in between.
"""

from __future__ import annotations

import gc
import sys

SWITCH_INTERVAL_S = 0.001


def tune_for_serving() -> None:
    """Apply both settings to this process (call once, after the app is built)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.collect()
    gc.freeze()
