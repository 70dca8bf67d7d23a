"""The docker test cluster: what a real site runs, one container per host on one network.

    mariadb      MariaDB: accounting's database, and the brokers' journal
    controller   slurmctld + slurmdbd
    c1 c2        compute nodes, partition ``normal``
    q1           the compute node beside the QPUs, partition ``quantum`` (qpu GRES)
    emulator     ``slurm-qpu-emulator``: the vendors' clouds
    broker       HAProxy with the shipped configuration, in front of both brokers: the
                 one address nodes and jobs know (http://broker:8291)
    broker1 broker2  ``slurm-qpu broker`` on one MariaDB journal, both serving: the only
                 holders of the QPU credentials
    login        where users run sbatch/salloc/srun

No container registry answers here, so the base image is imported from a debootstrap root
file system (Debian bookworm, from the mirror in this machine's apt sources) that already
holds every Debian package the cluster needs; one image on top adds slurm-qpu from wheels
built on the host. Both are cached: the base by its package list, the rest by docker's own
layer cache. Configuration is in ``docker/`` as an admin would write it.

``python -m slurm_qpu_lab cluster-up|cluster-down`` (``make cluster-up``) drive it by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slurm_qpu_lab import haproxy
from slurm_qpu_lab.chroot import CACHE, debian_mirror

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("SLURM_QPU_CLUSTER", "/tmp/slurm-qpu-cluster"))
NETWORK = "slurm-qpu"
IMAGE = "slurm-qpu-node:latest"
BASE_REPO = "slurm-qpu-base"
SUITE = "bookworm"
# Everything from Debian, installed by debootstrap in one go (no network inside containers)
BASE_PACKAGES = (
    "slurmctld", "slurmd", "slurmdbd", "slurm-client", "munge", "mariadb-server",
    "openmpi-bin", "python3-mpi4py", "python3", "python3-venv", "libpython3.11", "tini",
    "procps", "iproute2", "ca-certificates", "passwd", "hostname", "netbase", "less",
    "haproxy",
)
EXTRAS = "ibm,pasqal,qrmi"  # the emulator is its own distribution (emulator/)
USERS = {"alice": 2001, "bob": 2002}
# Each QPU's "slurm" policy in the cluster's qrmi_config.json: ibm_manila serves up to four
# jobs at once from anywhere, ibm_kawasaki one job and only the quantum partition,
# ibm_brisbane only account physics (bob's; alice is in account quantum).
POLICY: dict[str, dict[str, Any]] = {
    "ibm_manila": {"max_jobs": 4},
    "ibm_kawasaki": {"max_jobs": 1, "partitions": ["quantum"]},
    "ibm_brisbane": {"accounts": ["physics"]},
}
# what `slurm-qpu slurm-conf` prints that slurm.conf takes as it is
GENERATED_SLURM_CONF = ("Licenses=", "JobSubmitPlugins=", "AccountingStorageTRES=")
BROKER_PORT = 8291
EMULATOR_PORT = 8290
BROKERS = ("broker1", "broker2")
JOURNAL_PASSWORD = "slurmqpupass"  # the brokers' MariaDB user (docker/entrypoint.sh makes it)


class ClusterError(RuntimeError):
    pass


@dataclass(frozen=True)
class Node:
    name: str
    role: str

    @property
    def container(self) -> str:
        return f"slurm-qpu-{self.name}"


NODES = (Node("mariadb", "mariadb"), Node("emulator", "emulator"),
         Node("controller", "controller"), Node("broker", "front"),
         *(Node(name, "broker") for name in BROKERS),
         Node("c1", "compute"), Node("c2", "compute"), Node("q1", "compute"),
         Node("login", "login"))
COMPUTE = tuple(n.name for n in NODES if n.role == "compute")


@dataclass
class Result:
    rc: int
    out: str

    def check(self, what: str) -> str:
        if self.rc != 0:
            raise ClusterError(f"{what} exited {self.rc}:\n{self.out}")
        return self.out


def _say(msg: str) -> None:
    print(f"[cluster] {msg}", flush=True)


@dataclass
class DockerCluster:
    root: Path = ROOT
    source: Path = REPO
    reap_interval: int = 5
    status_interval: int = 3  # the broker asks the vendors for the QPUs' status this often
    say: Callable[[str], None] = _say
    timings: dict[str, float] = field(default_factory=dict)
    _client: docker.DockerClient | None = None
    _qpu_config: dict[str, Any] | None = None  # asked of the emulator once

    def timings_text(self) -> str:
        """How long the set-up steps took, e.g. ``build 12 s, up 51 s``."""
        return ", ".join(f"{k} {v:.0f} s" for k, v in self.timings.items())

    # ----------------------------------------------------------------- engine
    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self.ensure_engine()
        assert self._client is not None
        return self._client

    def ensure_engine(self) -> None:
        """Connect to dockerd; install docker.io and start dockerd first if need be."""
        import docker

        try:
            self._client = docker.from_env(version="auto", timeout=300)
            return
        except docker.errors.DockerException:
            pass
        if shutil.which("dockerd") is None:
            self.say("installing docker.io (apt)")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.run(["apt-get", "update", "-qq"], check=False, env=env,
                           stdout=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                            "docker.io"], check=True, env=env, stdout=subprocess.DEVNULL)
        self.root.mkdir(parents=True, exist_ok=True)
        self.say(f"starting dockerd (log {self.root / 'dockerd.log'})")
        with (self.root / "dockerd.log").open("ab") as log:
            subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self._client = docker.from_env(version="auto", timeout=300)
                return
            except docker.errors.DockerException:
                time.sleep(0.5)
        raise ClusterError("dockerd did not answer within 60 s; see "
                           f"{self.root / 'dockerd.log'}")

    # ----------------------------------------------------------------- images
    def base_image(self) -> str:
        """The Debian base with every package the cluster needs, cached under a tag made of
        its package list: built on ``debian:bookworm`` when a registry answers, else
        imported from a debootstrap root file system."""
        import docker

        key = hashlib.sha256(f"{SUITE} {' '.join(BASE_PACKAGES)}".encode())
        tag = f"{BASE_REPO}:{SUITE}-{key.hexdigest()[:12]}"
        try:
            self.client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        started = time.monotonic()
        try:  # a registry behind a silent firewall must not cost minutes
            docker.from_env(version="auto", timeout=30).images.pull("debian", SUITE)
        except (docker.errors.DockerException, OSError) as exc:
            self.say(f"no registry answers ({str(exc).splitlines()[0][:120]}); "
                     "importing a debootstrap root file system instead")
            self._import_debootstrap(tag)
        else:
            self._build_on_registry_base(tag)
        self.timings["base image"] = time.monotonic() - started
        return tag

    def _build_on_registry_base(self, tag: str) -> None:
        self.say(f"docker build {tag} FROM debian:{SUITE} (apt inside the build)")
        try:
            self.client.images.build(
                path=str(self.source / "docker" / "base"), tag=tag, rm=True, forcerm=True,
                buildargs={"SUITE": SUITE, "PACKAGES": " ".join(BASE_PACKAGES)})
        except Exception as exc:  # BuildError carries the build log
            raise ClusterError(f"docker build of the base failed: {exc}\n"
                               + _build_log(exc)) from exc

    def _import_debootstrap(self, tag: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        import_debootstrap(self.client, tag, SUITE, BASE_PACKAGES,
                           self.root / "debootstrap.log", self.say)

    def _pip(self) -> str:
        dev = self.source / ".venv" / "bin" / "python"
        return str(dev) if dev.exists() else "/usr/bin/python3"

    def _dependency_wheels(self) -> Path:
        """Third-party wheels for every extra, built once per pyproject dependency set."""
        projects = [(self.source / "pyproject.toml").read_text(),
                    (self.source / "emulator" / "pyproject.toml").read_text()]
        key = hashlib.sha256("".join(p.split("[project.scripts]")[0]
                                     for p in projects).encode()).hexdigest()
        out = CACHE / f"wheels-{key[:12]}"
        if (out / ".complete").exists():
            return out
        self.say(f"building the dependency wheels ({EXTRAS}, the emulator's) into {out}")
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        proc = subprocess.run([self._pip(), "-m", "pip", "wheel", "-q", "-w", str(partial),
                               f"{self.source}[{EXTRAS}]", str(self.source / "emulator")],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ClusterError("pip wheel failed:\n" + (proc.stdout + proc.stderr)[-3000:])
        for own in [*partial.glob("slurm_qpu-*.whl"), *partial.glob("slurm_qpu_emulator-*.whl")]:
            own.unlink()
        (partial / ".complete").touch()
        shutil.rmtree(out, ignore_errors=True)
        partial.rename(out)
        return out

    def _context(self) -> Path:
        """The build context: docker/, the wheels, the shim and the public QPU names."""
        ctx = self.root / "build"
        shutil.rmtree(ctx, ignore_errors=True)
        shutil.copytree(self.source / "docker", ctx)
        shutil.copytree(self._dependency_wheels(), ctx / "wheels" / "deps")
        own = ctx / "wheels" / "own"
        proc = subprocess.run([self._pip(), "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                               str(own), str(self.source), str(self.source / "emulator")],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ClusterError("pip wheel of slurm-qpu failed:\n" + proc.stdout + proc.stderr)
        shims = [self.source / "shim" / name
                 for name in ("spank_qpu.so", "spank_qpu_python.so")]  # plugin, Python half
        if not all(shim.exists() for shim in shims):
            subprocess.run(["make", "-C", str(self.source), "shim"], check=True,
                           stdout=subprocess.DEVNULL)
        for shim in shims:
            shutil.copy(shim, ctx / shim.name)
        # as an admin does: the public name list users' sbatch checks --qpu against, and
        # the Slurm lines and job_submit.lua `slurm-qpu slurm-conf` makes of the config
        config = self.root / "build" / "qrmi_config.json"
        config.write_text(json.dumps(self.qpu_config()))
        tool = [self._pip(), "-m", "slurm_qpu"]
        subprocess.run([*tool, "config", "publish", str(config), "-o",
                        str(ctx / "etc" / "qpu_names.json")], check=True,
                       stdout=subprocess.DEVNULL)
        lines = subprocess.run([*tool, "slurm-conf", str(config)], check=True, text=True,
                               capture_output=True).stdout.splitlines()
        with (ctx / "etc" / "slurm.conf").open("a") as conf:
            conf.write("# from `slurm-qpu slurm-conf /etc/slurm-qpu/qrmi_config.json`\n")
            conf.writelines(f"{line}\n" for line in lines if line.startswith(GENERATED_SLURM_CONF))
        with (ctx / "etc" / "job_submit.lua").open("w") as lua:
            subprocess.run([*tool, "slurm-conf", "--job-submit", str(config)], check=True,
                           stdout=lua)
        config.unlink()
        return ctx

    def build(self) -> None:
        started = time.monotonic()
        base = self.base_image()
        ctx = self._context()
        self.say(f"docker build {IMAGE} (FROM {base})")
        try:
            self.client.images.build(path=str(ctx), tag=IMAGE, buildargs={"BASE": base},
                                     rm=True, forcerm=True)
        except Exception as exc:  # BuildError carries the build log
            raise ClusterError(f"docker build failed: {exc}\n{_build_log(exc)}") from exc
        self.timings["build"] = time.monotonic() - started

    def qpu_config(self) -> dict[str, Any]:
        """The emulator's QPUs as the broker reaches them (``http://emulator:8290``)."""
        if self._qpu_config is not None:
            return self._qpu_config
        proc = subprocess.run([self._pip(), "-m", "slurm_qpu_emulator", "--print-config",
                               "--public-url", f"http://emulator:{EMULATOR_PORT}"],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ClusterError("slurm-qpu-emulator --print-config failed:\n" + proc.stderr)
        config: dict[str, Any] = json.loads(proc.stdout)
        for resource in config["resources"]:
            if resource["name"] in POLICY:
                resource["slurm"] = POLICY[resource["name"]]
        self._qpu_config = config
        return config

    # ----------------------------------------------------------------- up / down
    def log_dir(self, node: str) -> Path:
        return self.root / "log" / node

    @property
    def home(self) -> Path:
        return self.root / "home"

    def up(self) -> None:
        started = time.monotonic()
        self.build()
        self.down(quiet=True)
        # a new cluster numbers its jobs from 1 again: nothing of the last one may remain
        for d in ("log", "secrets", "home", "haproxy"):
            shutil.rmtree(self.root / d, ignore_errors=True)
        secrets = self.root / "secrets"
        secrets.mkdir(mode=0o700)
        (secrets / "qrmi_config.json").write_text(json.dumps(self.qpu_config(), indent=2))
        (secrets / "qrmi_config.json").chmod(0o600)
        (secrets / "journal.password").write_text(JOURNAL_PASSWORD + "\n")
        (secrets / "journal.password").chmod(0o600)
        front = self.root / "haproxy"
        front.mkdir(exist_ok=True)
        # the shipped configuration, in front of both brokers, following docker's DNS (the
        # brokers start after it)
        (front / "haproxy.cfg").write_text(haproxy.render(
            f"0.0.0.0:{BROKER_PORT}", [(b, f"{b}:{BROKER_PORT}") for b in BROKERS],
            resolvers="127.0.0.11:53"))
        for user, uid in USERS.items():
            home = self.home / user
            home.mkdir(parents=True, exist_ok=True)
            os.chown(home, uid, 2000)
        self.client.networks.create(NETWORK, driver="bridge")
        for node in NODES:
            self.log_dir(node.name).mkdir(parents=True, exist_ok=True)
            self._run_container(node)
            if node.role in ("mariadb", "controller"):
                self._wait(f"{node.name} up", partial(self._daemon_ready, node), 180)
        self.wait_healthy()  # its errors carry every node's logs
        self.timings["up"] = time.monotonic() - started

    def _run_container(self, node: Node) -> Container:
        volumes = {str(self.log_dir(node.name)): {"bind": "/var/log/slurm", "mode": "rw"}}
        if node.role in ("compute", "login"):
            volumes[str(self.home)] = {"bind": "/home", "mode": "rw"}
        if node.role == "broker":
            volumes[str(self.root / "secrets")] = {"bind": "/run/secrets", "mode": "ro"}
        if node.role == "front":
            volumes[str(self.root / "haproxy")] = {"bind": "/etc/haproxy", "mode": "ro"}
        env = {"REAP_INTERVAL": str(self.reap_interval),
               "STATUS_INTERVAL": str(self.status_interval)}
        return self.client.containers.run(
            IMAGE, [node.role], name=node.container, hostname=node.name, detach=True,
            network=NETWORK, volumes=volumes, environment=env,
            labels={"slurm-qpu-cluster": "1"}, shm_size="256m")

    def _daemon_ready(self, node: Node) -> bool:
        if node.role == "mariadb":
            return self.exec("mariadb", "mariadb -u slurm -pslurmdbpass -h mariadb "
                                        "-e 'select 1' slurm_acct_db").rc == 0
        return self.exec(node.name, "scontrol ping").rc == 0

    def _wait(self, what: str, ok: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in NODES:  # a dead container never becomes ready: say so at once
                state = self._state(node)
                if state not in ("running", None):
                    raise ClusterError(f"container {node.container} is {state} while "
                                       f"waiting for {what}:\n{self.collect_logs()}")
            if ok():
                return
            time.sleep(0.5)
        raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}:\n"
                           + self.collect_logs())

    def _state(self, node: Node) -> str | None:
        import docker

        try:
            state: str = self.client.containers.get(node.container).status
            return state
        except docker.errors.NotFound:
            return None

    def wait_healthy(self, timeout: float = 180) -> None:
        """Every compute node idle, slurmdbd answering, broker and emulator answering."""
        def nodes_idle() -> bool:
            out = self.exec("login", "sinfo -h -N -o '%N %t'").out.split()
            states = dict(zip(out[::2], out[1::2], strict=False))
            return all(states.get(n) == "idle" for n in COMPUTE)

        self._wait("the compute nodes to be idle", nodes_idle, timeout)
        self._wait("slurmdbd", lambda: self.exec(
            "login", "sacctmgr -n show cluster format=cluster").out.strip() == "qpucluster",
                   timeout)
        self._wait("the emulator", lambda: self._http_ok(
            "emulator", EMULATOR_PORT, "/_emulator/requests"), timeout)
        for broker in BROKERS:
            self._wait(broker, partial(self._http_ok, broker, BROKER_PORT, "/v1/health"),
                       timeout)
        self._wait("the brokers through HAProxy",
                   lambda: self._http_ok("broker", BROKER_PORT, "/v1/health"), timeout)

    def address(self, node: str) -> str:
        c = self.client.containers.get(f"slurm-qpu-{node}")
        ip: str = c.attrs["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
        return ip

    def url(self, node: str, port: int, path: str) -> str:
        return f"http://{self.address(node)}:{port}{path}"

    def _http_ok(self, node: str, port: int, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.url(node, port, path), timeout=5) as resp:
                return bool(resp.status == 200)
        except (OSError, KeyError):
            return False

    def emulator_requests(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.url("emulator", EMULATOR_PORT, "/_emulator/requests"),
                                    timeout=10) as resp:
            log: list[dict[str, Any]] = json.load(resp)
        return log

    def emulator_post(self, path: str, body: dict[str, Any]) -> None:
        req = urllib.request.Request(self.url("emulator", EMULATOR_PORT, path),
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).close()

    def down(self, quiet: bool = False) -> None:
        """Remove the cluster's containers and network (the images stay, cached)."""
        import docker

        for c in self.client.containers.list(all=True, filters={"label": "slurm-qpu-cluster"}):
            c.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            self.client.networks.get(NETWORK).remove()
        if not quiet:
            self.say("cluster down (images kept; logs in " f"{self.root / 'log'})")

    # ----------------------------------------------------------------- using it
    def exec(self, node: str, command: str, user: str = "root", workdir: str | None = None,
             login: bool = False) -> Result:
        """Run ``command`` with bash on ``node`` (a login shell with ``login``)."""
        c = self.client.containers.get(f"slurm-qpu-{node}")
        argv = ["bash", "-lc" if login else "-c", command]
        rc, out = c.exec_run(argv, user=user, workdir=workdir, demux=False, stream=False)
        assert isinstance(out, bytes | None)
        return Result(-1 if rc is None else int(rc), (out or b"").decode(errors="replace"))

    def as_user(self, command: str, user: str = "alice", node: str = "login") -> Result:
        """A user's login shell on the login node, in their (shared) home directory."""
        return self.exec(node, command, user=user, workdir=f"/home/{user}", login=True)

    def write_home(self, user: str, name: str, text: str) -> Path:
        path = self.home / user / name
        path.write_text(text)
        os.chown(path, USERS[user], 2000)
        return path

    def sbatch(self, script: str, *args: str, user: str = "alice") -> int:
        name = f"job-{hashlib.sha256(script.encode()).hexdigest()[:8]}.sh"
        self.write_home(user, name, script)
        out = self.as_user(f"sbatch --parsable {' '.join(args)} {name}", user).check("sbatch")
        return int(out.strip().splitlines()[-1].split(";")[0])

    def job_state(self, job_id: int) -> str:
        out = self.exec("login", f"squeue -h -j {job_id} -o %T").out.strip()
        if out and "Invalid job id" not in out:
            return out.splitlines()[0]
        acct = self.exec("login", f"sacct -n -X -P -j {job_id} -o State").out.split()
        return acct[0] if acct else "UNKNOWN"

    def wait_job(self, job_id: int, timeout: float = 300) -> str:
        final = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                 "BOOT_FAIL", "DEADLINE", "PREEMPTED")
        deadline = time.monotonic() + timeout
        state = "UNKNOWN"
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state.split()[0] in final:
                return state.split()[0]
            time.sleep(1)
        raise ClusterError(f"job {job_id} still {state} after {timeout:.0f} s:\n"
                           + self.collect_logs())

    def journal(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Query the brokers' journal (SQLite's SQL; in MariaDB, reached from the host)."""
        import pymysql

        conn = pymysql.connect(host=self.address("mariadb"), user="slurmqpu",
                               password=JOURNAL_PASSWORD, database="slurm_qpu",
                               connect_timeout=10, autocommit=True)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql.replace("?", "%s"), args)
                return [tuple(row) for row in cursor.fetchall()]
        finally:
            conn.close()

    def broker_logs(self, name: str = "broker.log") -> str:
        """What both brokers logged (the reaper runs on whichever leads)."""
        return "\n".join((self.log_dir(b) / name).read_text(errors="replace")
                         for b in BROKERS if (self.log_dir(b) / name).exists())

    # ----------------------------------------------------------------- logs
    def collect_logs(self, lines: int = 60) -> str:
        """The tail of every daemon log of every node, then each container's own output."""
        parts: list[str] = []
        for node in NODES:
            for path in sorted(self.log_dir(node.name).glob("*.log")):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"===== {node.name}: {path.name} =====\n" + "\n".join(text))
            try:
                c = self.client.containers.get(node.container)
                out = c.logs(tail=lines).decode(errors="replace").strip()
                if out:
                    parts.append(f"===== {node.name}: container output ({c.status}) =====\n"
                                 + out)
            except Exception as exc:  # a removed container: say so and go on
                parts.append(f"===== {node.name}: no container ({exc})")
        return "\n".join(parts)


def import_debootstrap(client: docker.DockerClient, tag: str, suite: str,
                       packages: tuple[str, ...], log: Path,
                       say: Callable[[str], None]) -> None:
    """``docker import`` a debootstrap root file system of ``suite`` with ``packages``, from
    the Debian mirror of this machine's apt sources, as the image ``tag``."""
    mirror = debian_mirror()
    rootfs = CACHE / f"docker-{tag.replace(':', '-')}.partial"
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    say(f"debootstrap {suite} from {mirror} (log {log}); a few minutes, once")
    with log.open("wb") as out:
        proc = subprocess.run(["debootstrap", "--variant=minbase",
                               f"--include={','.join(packages)}", suite,
                               str(rootfs), mirror], stdout=out,
                              stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise ClusterError(f"debootstrap failed; see {log}:\n"
                           + log.read_text(errors="replace")[-3000:])
    # apt's downloaded packages and lists are dead weight in an image
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (rootfs / junk).glob("*"):
            if p.is_file():
                p.unlink()
    say(f"docker import -> {tag}")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
                           stdout=subprocess.PIPE)
    assert tar.stdout is not None
    repository, version = tag.split(":")
    client.api.import_image(src=tar.stdout, repository=repository, tag=version,
                            stream_src=True)
    if tar.wait() != 0:
        raise ClusterError("tar of the debootstrap root file system failed")
    shutil.rmtree(rootfs, ignore_errors=True)


def _build_log(exc: Exception) -> str:
    """The end of a failed build's log (``docker.errors.BuildError.build_log``)."""
    log = "".join(str(c.get("stream", c)) for c in getattr(exc, "build_log", []))
    return log[-4000:]
