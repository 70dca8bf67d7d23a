"""--qpu is registered and documented in every submit command."""

import pytest


@pytest.mark.parametrize("command", ["sbatch", "salloc", "srun"])
def test_qpu_option_shows_in_help(lab, command):
    proc = lab.as_user([command, "--help"])
    assert proc.returncode == 0
    assert "--qpu=NAME[,NAME...]" in proc.stdout
    assert "Quantum processor(s) to acquire" in proc.stdout
