"""A slurm-qpu command piped into `head` ends quietly, as Unix tools do (the emulator's
command ends through slurm-qpu's own handling, slurm_qpu.cli.closed_pipe)."""

from __future__ import annotations

import subprocess
import sys


def test_output_into_a_closed_pipe_ends_without_a_traceback() -> None:
    # the emulator's printed config is long enough to outlive `head -1`
    proc = subprocess.run(
        f"{sys.executable} -m slurm_qpu_emulator --print-config | head -1",
        shell=True, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "{"
    assert "Traceback" not in proc.stderr
    assert "BrokenPipeError" not in proc.stderr
