"""prune_app_cache: keeps Flower's per-run app directories ($FLWR_HOME/apps) bounded."""

from __future__ import annotations

import shutil
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


def prune_app_cache(flwr_home: Path, keep: int = 5) -> list[Path]:
    """Delete all but the ``keep`` most recently written app directories; returns the removed.

    Flower unpacks every run's FAB under ``$FLWR_HOME/apps/`` and never cleans up, and each
    of our runs carries its config in its FAB, so a device that trains for months would fill
    its disk. The newest entries include the app of any run in progress.
    """
    apps = flwr_home / "apps"
    try:
        entries = sorted(apps.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []
    removed = []
    for old in entries[keep:]:
        try:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
        except OSError as exc:
            log.warning("app_cache_prune_failed", path=str(old), error=str(exc))
            continue
        removed.append(old)
    if removed:
        log.info("app_cache_pruned", removed=len(removed), kept=min(keep, len(entries)))
    return removed
