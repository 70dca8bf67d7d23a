"""The lab cluster: set-up, daemons, teardown and helpers to use it as a job user."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_qpu_lab import haproxy
from slurm_qpu_lab.certificates import Certificates

DEFAULT_USER = "qpuuser"


class LabError(RuntimeError):
    pass


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    kw.setdefault("check", True)
    kw.setdefault("text", True)
    kw.setdefault("capture_output", True)
    try:
        return subprocess.run(cmd, **kw)
    except subprocess.CalledProcessError as exc:
        raise LabError(f"{shlex.join(cmd)} failed ({exc.returncode}): "
                       f"{(exc.stderr or exc.stdout or '').strip()}") from None


def bridge_name(slot: int) -> str:
    return f"sqpubr{slot}"


def forward_on_bridge(bridge: str, allow: bool) -> None:
    """Docker leaves the FORWARD policy DROP and br_netfilter sends bridged frames through
    it: allow (or stop allowing) traffic between the lab's namespaces, on its own bridge
    only. A lab inside a chroot has no iptables: the host calls this for it."""
    if not shutil.which("iptables"):
        return
    rule = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
    present = _run(["iptables", "-C", *rule], check=False).returncode == 0
    if allow and not present:
        _run(["iptables", "-I", *rule], check=False)
    elif not allow and present:
        _run(["iptables", "-D", *rule], check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours is not alive
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


def _stop(pid: int, grace: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start_munged() -> None:
    """Start munged as its Debian package would (a key if there is none, its directories,
    user munge); the caller waits until it answers."""
    key = Path("/etc/munge/munge.key")
    if not key.exists() or key.stat().st_size == 0:
        key.write_bytes(os.urandom(128))
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    for d, mode in (("/run/munge", 0o755), ("/var/log/munge", 0o700),
                    ("/var/lib/munge", 0o700)):
        Path(d).mkdir(parents=True, exist_ok=True)
        shutil.chown(d, "munge", "munge")
        Path(d).chmod(mode)
    _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"])


@dataclass
class Lab:
    """One lab cluster rooted at ``root``. ``slot`` keeps two labs (say the developer's and
    the test suite's) apart: own subnet, bridge, namespaces and ports."""

    root: Path
    source: Path | None = None  # a slurm-qpu checkout to install from
    nodes: int = 2
    slot: int = 0
    user: str = DEFAULT_USER
    extra_conf: list[str] = field(default_factory=list)
    # the vendor-API emulator serves the lab's default QPUs; its optional dependencies
    # (qiskit, pasqal-cloud, qrmi) go into the lab's venv with the plugin
    emulator: bool = True
    extras: str = "emulator,qrmi"
    # broker mode: `slurm-qpu broker` holds the credentials, the plugin asks it
    broker: bool = False
    _broker_args: tuple[str, ...] = field(default=(), init=False, repr=False)
    # broker URLs the plugstack line names before the lab's own broker (failover tests)
    brokers_before: tuple[str, ...] = field(default=(), init=False, repr=False)
    load_balancer: bool = field(default=False, init=False)  # HAProxy in front of the broker
    # the broker over TLS (use_tls): a site CA's certificate for its address
    tls: Certificates | None = field(default=None, init=False)
    # more arguments for the plugstack line (spank_qrmi's --env:NAME=VALUE, say)
    plugstack_args: tuple[str, ...] = field(default=(), init=False)
    _emulated: list[dict[str, Any]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        if self.source is not None:
            self.source = Path(self.source).resolve()

    # ------------------------------------------------------------------ layout
    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def slurm_conf(self) -> Path:
        return self.etc / "slurm.conf"

    @property
    def qrmi_config(self) -> Path:
        return self.etc / "qrmi_config.json"

    @property
    def prefix(self) -> Path:
        return self.root / "prefix"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def pytrace(self) -> Path:
        return self.root / "pytrace.log"

    @property
    def node_names(self) -> list[str]:
        return [f"node{k}" for k in range(1, self.nodes + 1)]

    def state_dir(self, node: str) -> Path:
        return self.root / "nodes" / node

    def ledger(self, qpu: str) -> Path:
        return self.root / "vendor" / f"{qpu}.jsonl"

    def log(self, name: str) -> Path:
        return self.root / "log" / name

    @property
    def _subnet(self) -> str:
        return f"10.77.{self.slot}"

    @property
    def _bridge(self) -> str:
        return bridge_name(self.slot)

    def _netns(self, k: int) -> str:
        return f"sqpu{self.slot}n{k}"

    def _veth(self, k: int) -> str:
        """The host-side end of node ``k``'s link to the lab bridge."""
        return f"sqpu{self.slot}v{k}"

    @property
    def _ctld_port(self) -> int:
        return 6817 + 10 * self.slot

    @property
    def emulator_url(self) -> str:
        """Where the emulator listens: the bridge address every node reaches."""
        return f"http://{self._subnet}.1:{8290 + self.slot}"

    @property
    def broker_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self._subnet}.1:{8390 + self.slot}"

    @property
    def load_balancer_url(self) -> str:
        return f"http://{self._subnet}.1:{8490 + self.slot}"

    @property
    def front_url(self) -> str:
        """The broker as nodes and jobs reach it: through HAProxy when it is in front."""
        return self.load_balancer_url if self.load_balancer else self.broker_url

    @property
    def broker_journal(self) -> Path:
        return self.root / "broker" / "journal.sqlite"

    @property
    def venv_bin(self) -> Path:
        return self.prefix / "lib" / "slurm-qpu" / "venv" / "bin"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.slurm_conf)
        env["PATH"] = f"{self.prefix}/bin:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    # ------------------------------------------------------------------ up
    def up(self) -> None:
        if os.geteuid() != 0:
            raise LabError("the lab runs real Slurm daemons: run it as root")
        for tool in ("slurmctld", "slurmd", "munged", "ip", "nsenter", "unshare"):
            if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
                raise LabError(f"{tool} not found: run tools/install-deps.sh first")
        self.down(quiet=True)
        try:
            self._up()
        except BaseException:
            self.down(quiet=True)  # leave no half-started daemons or namespaces behind
            raise

    def _up(self) -> None:
        # a new cluster starts empty: job ids restart at 1, so old leases and old job
        # output files (job-<id>.out of another run) must not linger
        for d in ("state", "spool", "nodes", "vendor", "log", "jobs", "broker"):
            shutil.rmtree(self.root / d, ignore_errors=True)
        for d in ("etc", "state", "spool", "log", "run", "nodes", "vendor"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.jobs_dir.mkdir(exist_ok=True)
        self.jobs_dir.chmod(0o1777)
        self._ensure_user()
        if self.source is not None:
            self.install()
        self.pytrace.touch()
        self.pytrace.chmod(0o666)
        self.write_qrmi_config()
        self._write_slurm_conf()
        self._start_munge()
        self._netns_up()
        if self.emulator:
            self._start_emulator()
        if self.broker:
            self.start_broker()
        self._start_daemons()
        self.wait_idle(self.nodes)
        self._write_lab_env()

    def install(self) -> None:
        assert self.source is not None
        extras = [f"EXTRAS={self.extras}"] if self.emulator and self.extras else []
        _run(["make", "-C", str(self.source), "install", f"PREFIX={self.prefix}", *extras],
             capture_output=True)

    def _ensure_user(self) -> None:
        try:
            pwd.getpwnam(self.user)
        except KeyError:
            _run(["useradd", "--create-home", "--shell", "/bin/bash", self.user])

    def example_resources(self) -> list[dict[str, Any]]:
        base = (self.source or Path(__file__).resolve().parents[2]) / "qrmi_config.example.json"
        resources: list[dict[str, Any]] = json.loads(base.read_text())["resources"]
        return resources

    def emulator_resources(self) -> list[dict[str, Any]]:
        """The emulator's QPUs, as its own ``--print-config`` describes them."""
        if not self.emulator:
            return []
        if self._emulated is None:
            out = _run([str(self.prefix / "bin" / "slurm-qpu-emulator"), "--print-config",
                        "--public-url", self.emulator_url]).stdout
            self._emulated = json.loads(out)["resources"]
        copy: list[dict[str, Any]] = json.loads(json.dumps(self._emulated))
        return copy  # callers may modify their copy

    def _start_emulator(self) -> None:
        host, port = self.emulator_url.removeprefix("http://").split(":")

        def listens() -> None:
            with socket.create_connection((host, int(port)), timeout=1):
                pass

        self._spawn("emulator", "the QPU emulator",
                    ["slurm-qpu-emulator", "--host", host, "--port", port],
                    listens, timeout=60)

    def _spawn(self, name: str, what: str, args: list[str], ready: Callable[[], None],
               timeout: float, env: dict[str, str] | None = None) -> None:
        """Run ``ARGS`` (a command the install put in the prefix's bin/, or an absolute path,
        and its arguments) in the background (log/<name>.log, run/<name>.pid) and wait
        until ``ready()`` stops raising OSError."""
        log = self.log(f"{name}.log").open("ab")
        command = args[0] if args[0].startswith("/") else str(self.prefix / "bin" / args[0])
        proc = subprocess.Popen([command, *args[1:]], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        (self.root / "run" / f"{name}.pid").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LabError(f"{what} exited:\n" + self.tail_logs())
            try:
                ready()
                return
            except OSError:
                time.sleep(0.1)
        raise LabError(f"{what} does not answer after {timeout:.0f} s:\n" + self.tail_logs())

    def _with_ledgers(self, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Point every simulated QPU's vendor ledger into the lab (one "vendor" for all
        nodes, as a real vendor is)."""
        for r in resources:
            if r.get("type") == "local-simulator":
                r.setdefault("environment", {})["QRMI_LOCAL_SIM_LEDGER"] = str(
                    self.ledger(r["name"]))
        return resources

    def write_qrmi_config(self, extra: list[dict[str, Any]] | None = None) -> None:
        """The example config (ledgers pointing into the lab) plus ``extra`` resources;
        root-only, like a production config, and published for users' submit checks."""
        extra = json.loads(json.dumps(extra or []))  # never modify the caller's list
        resources = self.example_resources() + self.emulator_resources() + extra
        body = {"resources": self._with_ledgers(resources)}
        tmp = self.qrmi_config.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.qrmi_config)
        _run([str(self.prefix / "bin" / "slurm-qpu"), "config", "publish",
              str(self.qrmi_config)])

    def plugstack_line(self) -> str:
        return (f"required {self.prefix}/lib/slurm/spank_qpu.so {self.qrmi_config} "
                f"venv={self.prefix}/lib/slurm-qpu/venv state_dir={self.root}/nodes/%n "
                f"log_level=debug pytrace={self.pytrace} peer_timeout=30"
                + (f" broker={','.join((*self.brokers_before, self.front_url))} "
                   "broker_timeout=20" if self.broker else "")
                + (f" broker_ca={self.tls.ca}" if self.broker and self.tls else "")
                + "".join(f" {arg}" for arg in self.plugstack_args))

    def write_plugstack(self) -> None:
        """plugstack.conf for the current mode (each job's prolog and steps read it anew)."""
        (self.etc / "plugstack.conf").write_text(self.plugstack_line() + "\n")

    def use_broker(self, on: bool, *broker_args: str) -> None:
        """Switch a running lab between broker and direct mode."""
        self.broker = on
        if on:
            self._broker_args = broker_args
            self.start_broker()
        else:
            self.stop_broker()
        self.write_plugstack()

    # ------------------------------------------------------------------ broker
    def start_broker(self) -> None:
        """Run ``slurm-qpu broker`` on the bridge address (root, like the config), with the
        extra arguments ``use_broker`` was given."""
        args = self._broker_args
        self.stop_broker()
        host, port = self.broker_url.split("//")[1].split(":")
        self.broker_journal.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tls = self.tls
        verify = ssl.create_default_context(cafile=str(tls.ca)) if tls else None
        if tls:
            args = (*args, "--tls-cert", str(tls.cert), "--tls-key", str(tls.key))

        def healthy() -> None:
            with urllib.request.urlopen(f"{self.broker_url}/v1/health", timeout=1,
                                        context=verify):
                pass

        self._spawn("broker", "the broker",
                    ["slurm-qpu", "broker", "--config", str(self.qrmi_config), "--host", host,
                     "--port", port,
                     "--public-url", self.front_url, "--journal", str(self.broker_journal),
                     "--audit-log", str(self.log("broker-audit.log")), "--reap-interval", "2",
                     "--log-level", "debug", *args,
                     *(["--trusted-proxy", f"{self._subnet}.1"] if self.load_balancer else [])],
                    healthy, timeout=30, env=self.env())

    def use_tls(self, on: bool) -> None:
        """Serve the broker over TLS with a certificate of a site CA made here (its CA file
        readable by the jobs), or plain HTTP again; the broker restarts and plugstack.conf
        names it by https with broker_ca= the CA."""
        if on:
            from slurm_qpu_lab.certificates import make

            directory = self.root / "tls"
            self.tls = make(directory, names=("broker",), addresses=(f"{self._subnet}.1",))
            directory.chmod(0o755)
            self.tls.ca.chmod(0o644)
        else:
            self.tls = None
        self.start_broker()
        self.write_plugstack()

    def use_load_balancer(self, on: bool) -> None:
        """Put HAProxy (Debian's) in front of the broker, with the configuration the
        project ships (examples/haproxy/slurm-qpu-broker.cfg) given the lab's addresses,
        or take it away; the broker restarts with the matching public URL and plugstack.conf
        names the front."""
        self.load_balancer = on
        if on:
            self._start_haproxy()
        else:
            self._stop_pid("haproxy")
        self.start_broker()
        self.write_plugstack()

    def _start_haproxy(self) -> None:
        host, port = self.load_balancer_url.removeprefix("http://").split(":")
        text = haproxy.render(f"{host}:{port}",
                              [("broker1", self.broker_url.removeprefix("http://"))])
        cfg = self.etc / "haproxy.cfg"
        cfg.write_text(text)
        self._stop_pid("haproxy")

        def listens() -> None:
            with socket.create_connection((host, int(port)), timeout=1):
                pass

        self._spawn("haproxy", "HAProxy", ["/usr/sbin/haproxy", "-db", "-f", str(cfg)],
                    listens, timeout=30)

    def _stop_pid(self, name: str) -> None:
        pidfile = self.root / "run" / f"{name}.pid"
        with contextlib.suppress(FileNotFoundError, ValueError):
            _stop(int(pidfile.read_text().strip()))
            pidfile.unlink()

    def stop_broker(self, kill: bool = False) -> None:
        """Stop the broker (``kill``: SIGKILL, as a crash would)."""
        if not kill:
            self._stop_pid("broker")
            return
        pidfile = self.root / "run" / "broker.pid"
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int(pidfile.read_text().strip())
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            for _ in range(50):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            pidfile.unlink()

    def _write_slurm_conf(self) -> None:
        self.write_plugstack()
        names = [r["name"] for r in self.example_resources() + self.emulator_resources()]
        gres = ",".join(f"qpu:{n}:1" for n in names)
        (self.etc / "gres.conf").write_text(
            "".join(f"Name=qpu Type={n} Count=1\n" for n in names))
        host = socket.gethostname().split(".")[0]
        lines = [
            "ClusterName=qpulab",
            f"SlurmctldHost={host}({self._subnet}.1)",
            f"SlurmctldPort={self._ctld_port}",
            f"SlurmdPort={self._ctld_port + 1}",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge",
            f"StateSaveLocation={self.root}/state",
            f"SlurmdSpoolDir={self.root}/spool/%n",
            f"SlurmctldPidFile={self.root}/run/slurmctld.pid",
            f"SlurmdPidFile={self.root}/run/slurmd-%n.pid",
            f"SlurmctldLogFile={self.root}/log/slurmctld.log",
            f"SlurmdLogFile={self.root}/log/slurmd-%n.log",
            "SlurmctldDebug=info", "SlurmdDebug=debug",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "SchedulerParameters=batch_sched_delay=0",
            # every node runs the prolog at allocation time, before any step: the other
            # nodes of a multi-node job then learn the lease from the first one at once
            "PrologFlags=Alloc",
            "ReturnToService=2", "MpiDefault=none", "MailProg=/bin/true",
            "KillWait=2", "OverTimeLimit=0", "InactiveLimit=0", "MinJobAge=600",
            f"PlugStackConfig={self.etc}/plugstack.conf",
            "GresTypes=qpu",
            *self.extra_conf,
        ]
        cpus = os.cpu_count() or 2
        for k, node in enumerate(self.node_names, start=1):
            lines.append(f"NodeName={node} NodeAddr={self._subnet}.{10 + k} CPUs={cpus} "
                         f"RealMemory=1000 Gres={gres} State=UNKNOWN")
        lines.append("PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
        self.slurm_conf.write_text("\n".join(lines) + "\n")

    @staticmethod
    def _munge_answers() -> bool:
        mung = subprocess.run(["munge", "-n"], capture_output=True, check=False)
        return mung.returncode == 0 and subprocess.run(
            ["unmunge"], input=mung.stdout, capture_output=True, check=False).returncode == 0

    def _start_munge(self) -> None:
        # Ask the socket, not pgrep: in a chroot, pgrep sees the host's munged. A munged
        # started here is the host's one munged, which every lab (slot) on the machine and
        # the hostile tier use: it stays up at ``down``, as the munge service would.
        if not self._munge_answers():
            start_munged()
        for _ in range(100):
            if self._munge_answers():
                return
            time.sleep(0.1)
        raise LabError("munged does not answer")

    def _netns_up(self) -> None:
        br, net = self._bridge, self._subnet
        _run(["ip", "link", "add", br, "type", "bridge"])
        _run(["ip", "addr", "add", f"{net}.1/24", "dev", br])
        _run(["ip", "link", "set", br, "up"])
        forward_on_bridge(br, True)
        for k in range(1, self.nodes + 1):
            ns, veth = self._netns(k), self._veth(k)
            _run(["ip", "netns", "add", ns])
            _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                  "netns", ns])
            _run(["ip", "link", "set", veth, "master", br, "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{net}.{10 + k}/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", ns, "route", "add", "default", "via", f"{net}.1"])

    def _start_daemons(self) -> None:
        conf = str(self.slurm_conf)
        _run(["slurmctld", "-f", conf])
        for k, node in enumerate(self.node_names, start=1):
            (self.root / "spool" / node).mkdir(exist_ok=True)
            self.state_dir(node).mkdir(parents=True, exist_ok=True)
            # nsenter, not `ip netns exec`: the latter remounts /sys and hides the cgroup
            # mount slurmd needs. A UTS namespace gives each node its own host name.
            _run(["nsenter", f"--net=/run/netns/{self._netns(k)}", "unshare", "--uts", "sh",
                  "-c", f"hostname {node} && exec slurmd -f {shlex.quote(conf)}"])

    def _write_lab_env(self) -> None:
        text = (f"# slurm-qpu lab at {self.root}: source this file, then use sbatch/srun\n"
                f"export SLURM_CONF={self.slurm_conf}\n"
                f"export PATH={self.prefix}/bin:{self.venv_bin}:$PATH\n"
                f"export SLURM_QPU_LAB={self.root}\n"
                + (f"export SLURM_QPU_EMULATOR={self.emulator_url}\n" if self.emulator else ""))
        (self.root / "lab.env").write_text(text)
        if self.source is not None and self.slot == 0:  # the developer's lab
            (self.source / "lab.env").write_text(text)

    # ------------------------------------------------------------------ down
    def down(self, quiet: bool = False) -> None:
        """Stop what ``up`` started, in the order that does not hang: slurmd first (it
        blocks on exit reporting to a dead slurmctld), then slurmctld; munged, shared by
        every lab on the machine, stays up."""
        run = self.root / "run"
        pidfiles = [*sorted(run.glob("slurmd-*.pid")), run / "slurmctld.pid",
                    run / "broker.pid", run / "emulator.pid", run / "haproxy.pid"]
        for pidfile in pidfiles:
            with contextlib.suppress(FileNotFoundError, ValueError):
                _stop(int(pidfile.read_text().strip()))
                pidfile.unlink()
        for k in range(1, 9):
            ns = self._netns(k)
            if not Path(f"/run/netns/{ns}").exists():
                continue
            pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:  # job processes left behind in the node
                _stop(int(pid), grace=1.0)
            _run(["ip", "netns", "del", ns], check=False)
        # A lab killed mid-run (or one in a chroot whose /run/netns is gone) leaves its
        # host-side veth ends behind; the next bring-up would fail with "File exists".
        for k in range(1, 9):
            veth = self._veth(k)
            if Path(f"/sys/class/net/{veth}").exists():
                _run(["ip", "link", "del", veth], check=False)
        _run(["ip", "link", "del", self._bridge], check=False)
        forward_on_bridge(self._bridge, False)
        if not quiet:
            print(f"lab at {self.root} stopped")

    # ------------------------------------------------------------------ use
    def scontrol(self, *args: str) -> str:
        return _run(["scontrol", *args], env=self.env()).stdout

    def node_states(self) -> dict[str, str]:
        out = _run(["sinfo", "-h", "-N", "-o", "%N %T"], env=self.env(), check=False).stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def wait_idle(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.node_states()
            if sum(1 for s in states.values() if s == "idle") >= count:
                return
            time.sleep(0.1)
        raise LabError(f"nodes not idle after {timeout:.0f} s: {self.node_states()}\n"
                       + self.tail_logs())

    def as_user(self, command: str | list[str], *, timeout: float = 120.0,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command as the unprivileged job user, in the jobs directory."""
        argv = ["bash", "-lc", command] if isinstance(command, str) else command
        env_args = [f"SLURM_CONF={self.slurm_conf}",
                    f"PATH={self.prefix}/bin:{self.venv_bin}:/usr/local/bin:/usr/bin:/bin"]
        return subprocess.run(
            ["runuser", "-u", self.user, "--", "env", *env_args, *argv],
            cwd=self.jobs_dir, text=True, capture_output=True, timeout=timeout,
            input=input, check=False)

    def sbatch(self, *args: str, script: str | None = None) -> int:
        """Submit as the job user; return the job id (LabError with sbatch's words if not)."""
        cmd = ["sbatch", "--parsable", *args]
        proc = self.as_user(cmd, input=script)
        if proc.returncode != 0:
            raise LabError(f"sbatch {shlex.join(args)} failed: {proc.stderr.strip()}")
        return int(proc.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> dict[str, str]:
        from slurm_qpu.slurm.commands import parse_oneliner

        out = _run(["scontrol", "show", "job", "-o", str(job_id)], env=self.env(),
                   check=False).stdout
        return parse_oneliner(out.splitlines()[0]) if out.strip() else {}

    def wait_job(self, job_id: int, timeout: float = 120.0) -> str:
        """Wait until the job has ended and its epilogs ran; return its final state."""
        deadline = time.monotonic() + timeout
        state = "?"
        while time.monotonic() < deadline:
            info = self.job(job_id)
            state = info.get("JobState", "?")
            done = state not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING",
                                 "SUSPENDED", "REQUEUED", "RESIZING", "?")
            if done and "COMPLETING" not in self.scontrol("show", "job", str(job_id)):
                return state
            time.sleep(0.2)
        raise LabError(f"job {job_id} still {state} after {timeout:.0f} s\n" + self.tail_logs())

    def ledger_events(self, qpu: str, job_id: int | None = None) -> list[dict[str, Any]]:
        path = self.ledger(qpu)
        if not path.exists():
            return []
        events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [e for e in events if job_id is None or e.get("job_id") == job_id]

    def tail_logs(self, lines: int = 40) -> str:
        out = []
        for log in sorted((self.root / "log").glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log}\n" + "\n".join(text))
        return "\n".join(out)
