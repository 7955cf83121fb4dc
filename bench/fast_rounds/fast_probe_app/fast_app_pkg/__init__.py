"""bench/plain_app on FastGrid (issue 3 probe)."""
