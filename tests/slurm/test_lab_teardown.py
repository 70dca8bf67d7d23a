"""The lab tool itself: a lab killed mid-run must not stop the next one coming up."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from slurm_qpu_lab.cluster import Lab

pytestmark = pytest.mark.slurm

SLOT = 7  # not used by any lab the suite starts


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def test_lab_down_removes_a_stale_host_veth_left_by_a_killed_lab(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root to create network links")
    veth = f"sqpu{SLOT}v1"
    # what a killed lab (or one in a chroot whose /run/netns went away) leaves behind:
    # the host end of a node's link, its peer in no namespace we know of
    subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name",
                    f"sqpu{SLOT}p1"], check=True)
    try:
        assert _link_exists(veth)
        Lab(tmp_path, slot=SLOT, emulator=False).down(quiet=True)
        assert not _link_exists(veth)
    finally:
        subprocess.run(["ip", "link", "del", veth], check=False, capture_output=True)
