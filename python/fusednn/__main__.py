"""python -m fusednn train: see fusednn.cli."""

import sys

from fusednn.cli import main

sys.exit(main())
