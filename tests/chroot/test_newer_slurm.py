"""The whole real-Slurm tier again, against newer Slurm and Python releases in debootstrap
chroots: Debian trixie (Slurm 24.11, Python 3.13) and sid (Slurm 26.05, Python 3.14).
CHROOT_SUITES=trixie runs one only."""

import os
import re
from pathlib import Path

import pytest

from slurm_qpu_lab import chroot

REPO = Path(__file__).resolve().parents[2]
SUITES = os.environ.get("CHROOT_SUITES", "trixie,sid").split(",")
SLURM_MAJOR = {"trixie": "24.11", "sid": "26.05"}  # what each suite shipped when written


@pytest.mark.chroot
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("suite", SUITES)
def test_real_slurm_tier_passes_on_newer_slurm(suite, tmp_path):
    if os.geteuid() != 0:
        pytest.fail("the chroot tier needs root (debootstrap, mount, chroot)")
    log = tmp_path / f"{suite}.log"
    rc = chroot.run_tier(suite, REPO, log)
    text = log.read_text(errors="replace")
    summary = re.findall(r"=+ (.*(?:passed|failed|error).*) in [\d.]+s", text)
    assert rc == 0, f"make test-slurm in the {suite} chroot exited {rc}:\n" + text[-8000:]
    assert summary and "failed" not in summary[-1] and "passed" in summary[-1], text[-4000:]
    version = re.search(r"slurm-wlm (\d+\.\d+)", text)
    assert version, text[:2000]
    if suite in SLURM_MAJOR:  # the tier really ran against the newer Slurm
        assert version.group(1) == SLURM_MAJOR[suite]
    print(f"{suite}: Slurm {version.group(1)}: {summary[-1]}")
