"""A fresh Debian 12 machine in a container, for the package tier.

What an admin starts from: a minimal bookworm with systemd as PID 1 and apt pointing at
the Debian mirror, nothing of Slurm or slurm-qpu. The tests copy the built ``.deb`` files
in and follow ``docs/install.md``: ``apt install ./slurm-qpu*.deb`` pulls Slurm and munge
from the mirror, systemd starts the daemons from their packaged units.

No registry answers here, so the image is imported from a debootstrap root file system
(cached under a tag made of its package list). systemd runs unprivileged: the container
gets the host's cgroup tree read-only and tmpfs on /run, which is all systemd 252 needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from slurm_qpu_lab.docker_cluster import DockerCluster, Result, import_debootstrap

if TYPE_CHECKING:
    from docker.models.containers import Container

SUITE = "bookworm"
# a minimal Debian that boots systemd; everything else comes from apt, as on a new machine
PACKAGES = ("systemd", "systemd-sysv", "dbus", "ca-certificates")
IMAGE_REPO = "slurm-qpu-fresh-debian"
LABEL = "slurm-qpu-fresh-debian"


class FreshDebianError(RuntimeError):
    pass


def _say(msg: str) -> None:
    print(f"[fresh-debian] {msg}", flush=True)


def shell_blocks(markdown: str, begin: str, end: str) -> list[str]:
    """The ```sh blocks of ``markdown`` between the comments ``<!-- begin -->`` and
    ``<!-- end -->``: the steps a page tells an admin to type, in order."""
    start = markdown.find(f"<!-- {begin} -->")
    stop = markdown.find(f"<!-- {end} -->")
    if start < 0 or stop < start:
        raise FreshDebianError(f"no <!-- {begin} --> ... <!-- {end} --> section")
    section = markdown[start:stop]
    return [m.group(1) for m in re.finditer(r"^```(?:sh|bash)\n(.*?)^```$", section,
                                            re.MULTILINE | re.DOTALL)]


@dataclass
class FreshDebian:
    """One container: ``start()``, ``run()`` commands in it, ``remove()``."""

    name: str = "slurm-qpu-fresh"
    hostname: str = "qpuhost"
    work: Path = Path("/tmp/slurm-qpu-fresh-debian")
    say: Callable[[str], None] = _say
    _engine: DockerCluster | None = None
    _container: Container | None = None

    @property
    def engine(self) -> DockerCluster:
        if self._engine is None:
            self._engine = DockerCluster(root=self.work, say=self.say)
        return self._engine

    def image(self) -> str:
        import docker

        key = hashlib.sha256(f"{SUITE} {' '.join(PACKAGES)}".encode()).hexdigest()[:12]
        tag = f"{IMAGE_REPO}:{SUITE}-{key}"
        client = self.engine.client
        try:
            client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        self.work.mkdir(parents=True, exist_ok=True)
        import_debootstrap(client, tag, SUITE, PACKAGES, self.work / "debootstrap.log",
                           self.say)
        return tag

    def start(self) -> None:
        """Boot the machine: systemd up, the network answering."""
        self.remove()
        tag = self.image()
        self._container = self.engine.client.containers.run(
            tag, ["/lib/systemd/systemd"], name=self.name, hostname=self.hostname,
            detach=True, labels={LABEL: "1"}, tmpfs={"/run": "", "/run/lock": ""},
            volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "ro"}},
            environment={"container": "docker"}, shm_size="256m")
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            state = self.run("systemctl is-system-running || true").out.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.5)
        else:
            raise FreshDebianError(f"systemd did not come up (state {state!r}):\n"
                                   + self.logs())

    @property
    def container(self) -> Container:
        if self._container is None:
            raise FreshDebianError("the machine is not started")
        return self._container

    def run(self, script: str, user: str = "root", workdir: str | None = None) -> Result:
        """``script`` with bash -e (a login shell for users: their PATH and HOME)."""
        argv = ["bash", "-lec" if user != "root" else "-ec", script]
        rc, out = self.container.exec_run(argv, user=user, workdir=workdir,
                                          environment={"DEBIAN_FRONTEND": "noninteractive"})
        assert isinstance(out, bytes | None)
        return Result(-1 if rc is None else int(rc), (out or b"").decode(errors="replace"))

    def check(self, script: str, what: str, user: str = "root") -> str:
        result = self.run(script, user=user)
        if result.rc != 0:
            raise FreshDebianError(f"{what} exited {result.rc}:\n{result.out}\n"
                                   + self.logs())
        return result.out

    def put(self, files: list[Path], directory: str) -> None:
        """Copy host files into ``directory`` of the machine."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path in files:
                tar.add(str(path), arcname=path.name)
        self.run(f"mkdir -p {directory}")
        self.container.put_archive(directory, buf.getvalue())

    def logs(self, lines: int = 80) -> str:
        """What to read when something failed: failed units, slurm-qpu's and Slurm's logs."""
        if self._container is None:
            return ""
        parts = []
        for cmd in ("systemctl --failed --no-legend --no-pager",
                    # systemd without cgroup write access says so on every start: noise
                    f"journalctl --no-pager -n {lines * 3} -u slurm-qpu-broker "
                    "-u slurm-qpu-emulator -u slurmctld -u slurmd -u munge "
                    f"| grep -v 'Failed to get cgroup ID' | tail -n {lines}",
                    f"tail -n {lines} /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log"):
            with contextlib.suppress(Exception):
                parts.append(f"===== {cmd}\n{self.run(cmd + ' 2>&1 || true').out}")
        return "\n".join(parts)

    def remove(self) -> None:
        import docker

        with contextlib.suppress(docker.errors.NotFound):
            self.engine.client.containers.get(self.name).remove(force=True)
        self._container = None
