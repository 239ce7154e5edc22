"""``python -m headstart``: the ``headstart`` command (what ``torchrun -m headstart`` runs)."""

import sys

from headstart.cli.main import main

sys.exit(main())
