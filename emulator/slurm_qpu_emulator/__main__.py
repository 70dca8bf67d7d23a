"""``python -m slurm_qpu_emulator``: the same as ``slurm-qpu-emulator``."""

import sys

from slurm_qpu_emulator.cli import main

sys.exit(main())
