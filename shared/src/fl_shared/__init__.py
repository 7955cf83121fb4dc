"""Shared, torch-free package root for the federated-learning fleet platform."""

from pathlib import Path

# The repository's VERSION file (a symlink here, a copy in the wheel): one version for all.
__version__ = Path(__file__).with_name("VERSION").read_text(encoding="utf-8").strip()
