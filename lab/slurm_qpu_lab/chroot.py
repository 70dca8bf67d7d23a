"""Run the real-Slurm tier against a newer Slurm: Debian trixie (Slurm 24.11) or sid
(26.05) in a debootstrap chroot, without touching the host's packages.

The root file system is built once from the Debian mirror this machine's apt already uses
and cached; the checkout is copied in and ``make test-slurm`` runs inside, so the shim is
rebuilt against that Slurm and that Python (one build per Slurm major release).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from slurm_qpu_lab.cluster import bridge_name, forward_on_bridge

CACHE = Path(os.environ.get("SLURM_QPU_CHROOT_CACHE", "/var/cache/slurm-qpu"))
PACKAGES = ("slurmctld,slurmd,slurm-client,munge,libslurm-dev,gcc,libc6-dev,make,python3-dev,"
            "python3-venv,iproute2,util-linux,procps,ca-certificates,passwd")
IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                "*.so", "lab.env", ".mypy_cache", ".ruff_cache",
                                ".pytest_cache")


LAB_SLOT = 2  # the lab inside the chroot shares the host's network: keep it apart
LAB_NET = f"10.77.{LAB_SLOT}"


class ChrootError(RuntimeError):
    pass


def debian_mirror() -> str:
    """The Debian mirror of this machine's own apt sources."""
    for path in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        for line in sources.read_text().splitlines():
            parts = line.split()
            if parts[:1] == ["deb"] and len(parts) > 1 and "security" not in line:
                return parts[1]
    raise ChrootError("no Debian mirror found in /etc/apt")


def ensure_rootfs(suite: str, log: Path) -> Path:
    root = CACHE / f"chroot-{suite}"
    if (root / "usr/sbin/slurmd").exists():
        return root
    if shutil.which("debootstrap") is None:
        raise ChrootError("debootstrap is missing: run tools/install-deps.sh")
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        proc = subprocess.run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}",
                               suite, str(partial), debian_mirror()], stdout=out,
                              stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise ChrootError(f"debootstrap {suite} failed; see {log}")
    partial.rename(root)
    return root


@contextlib.contextmanager
def mounted(root: Path) -> Iterator[None]:
    """The chroot's root as a mount point of its own (``ip netns`` remounts ``/`` rslave,
    which fails on a plain directory), then proc, sys and dev (rslave: unmounting must not
    reach the host). Everything is unmounted afterwards, lazily if busy."""
    mounts = [["--bind", str(root), str(root)],
              ["-t", "proc", "proc", str(root / "proc")],
              ["--rbind", "/sys", str(root / "sys")],
              ["--rbind", "/dev", str(root / "dev")]]
    try:
        for args in mounts:
            subprocess.run(["mount", *args], check=True)
            if args[0] == "--rbind":
                subprocess.run(["mount", "--make-rslave", args[-1]], check=True)
        yield
    finally:
        subprocess.run(["umount", "-R", "-l", str(root)], check=False, capture_output=True)


def _bring_host_settings(root: Path) -> None:
    """What pip and name resolution need inside (Slurm resolves this host's own name)."""
    for name in ("/etc/resolv.conf", "/etc/hosts", "/etc/pip.conf",
                 "/etc/ssl/certs/ca-certificates.crt"):
        src = Path(name)
        if src.exists():
            dst = root / name.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    # Slurm 24.11 looks up the peer of every RPC by address; with no DNS answer for the
    # lab's private addresses each lookup hangs until slurmctld gives up on the node.
    with (root / "etc/hosts").open("a") as hosts:
        hosts.write(f"{LAB_NET}.1 lab-controller\n")
        hosts.writelines(f"{LAB_NET}.{10 + k} node{k}\n" for k in range(1, 9))


def run_tier(suite: str, source: Path, log: Path) -> int:
    """Copy ``source`` into the chroot and run ``make test-slurm`` there; return its exit
    code (its output goes to ``log``)."""
    root = ensure_rootfs(suite, log)
    work = root / "opt" / "slurm-qpu"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work, ignore=IGNORE)
    _bring_host_settings(root)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/root", "LANG": "C.UTF-8", "CI": os.environ.get("CI", ""),
           "LAB_SLOT": str(LAB_SLOT), "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_DEFAULT_TIMEOUT": "180"}
    command = "cd /opt/slurm-qpu && make test-slurm LAB=/tmp/slurm-qpu-chroot-lab"
    versions = subprocess.run(["chroot", str(root), "sh", "-c", "slurmd -V; python3 -V"],
                              env=env, capture_output=True, text=True, check=False).stdout
    versions = versions.strip().replace("\n", " / ")
    bridge = bridge_name(LAB_SLOT)
    forward_on_bridge(bridge, True)  # the chroot has no iptables; dockerd may be running
    try:
        with mounted(root), log.open("a") as out:
            out.write(f"== {suite}: {versions}\n")
            out.write(f"== {suite}: {command}\n")
            out.flush()
            proc = subprocess.run(["chroot", str(root), "bash", "-c", command], env=env,
                                  stdout=out, stderr=subprocess.STDOUT, check=False)
    finally:
        forward_on_bridge(bridge, False)
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    suite = args[0] if args else "trixie"
    log = Path(args[1]) if len(args) > 1 else Path(f"/tmp/slurm-qpu-chroot-{suite}.log")
    rc = run_tier(suite, Path(__file__).resolve().parents[2], log)
    print(f"{suite}: make test-slurm exited {rc}; log: {log}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
