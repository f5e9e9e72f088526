"""`python -m hwm_studio ARGS` is `hwm-studio ARGS` (and what `torchrun -m hwm_studio` runs)."""

import sys

from hwm_studio.cli import main

sys.exit(main())
