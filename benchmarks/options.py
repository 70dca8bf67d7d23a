"""What every benchmark module is given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Options:
    quick: bool  # few repetitions: proves the code runs (CI smoke test), numbers are rough
    workdir: Path  # scratch space (journals, configs, the lab)
    source: Path  # the slurm-qpu checkout (the lab installs the plugin from it)

    def reps(self, full: int, quick: int = 3) -> int:
        return quick if self.quick else full
