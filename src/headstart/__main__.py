"""``python -m headstart``: the ``headstart`` command, as ``torchrun -m headstart`` starts it."""

from __future__ import annotations

import sys

from headstart.cli.main import entry

if __name__ == "__main__":
    sys.exit(entry())
