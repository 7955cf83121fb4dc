"""``python -m fl_edge_agent.fast_supernode``: Flower's ``flower-supernode`` with adaptive polls.

Same command line as ``flower-supernode``. The agent starts the SuperNode this way when its
ClientApp runtime is ``warm``; see :mod:`fl_edge_agent.flower_polling` for what changes.
"""

from __future__ import annotations

import sys

from fl_shared.flower_polling import PollSettings, patch_supernode


def main() -> None:
    """Patch the SuperNode's polling, then run Flower's own entry point with our argv."""
    patch_supernode(PollSettings())
    from flwr.supernode.cli.flower_supernode import flower_supernode

    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
