"""The HAProxy configuration the project ships (examples/haproxy/slurm-qpu-broker.cfg),
given a lab's addresses: where it listens and the brokers behind it. The labs run the
file an admin would use, not one of their own: only addresses change, and what the lab
cannot have (syslog, /run/haproxy) goes.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[2] / "examples" / "haproxy" / "slurm-qpu-broker.cfg"


def render(bind: str, servers: list[tuple[str, str]], *, resolvers: str | None = None,
           shipped: Path = SHIPPED) -> str:
    """The shipped configuration listening on ``bind`` (HOST:PORT) in front of ``servers``
    (name, HOST:PORT), all of them active. ``resolvers``: a DNS server (HOST:PORT) whose
    answers HAProxy follows, for brokers that start after it (docker's names)."""
    lines: list[str] = []
    for line in shipped.read_text().splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("log", "stats"):
            continue  # no syslog, no /run/haproxy in a lab: its stderr is its log
        if word == "bind":
            line = f"    bind {bind}"
        elif word == "server":
            continue  # the lab's, below
        elif word == "default-server" and resolvers:
            line += " init-addr none resolvers lab"
        lines.append(line)
    # the backend is the file's last section: the servers go at its end
    lines += [f"    server {name} {address} check" for name, address in servers]
    if resolvers:
        lines += ["", "resolvers lab", f"    nameserver dns {resolvers}", "    hold valid 1s"]
    return "\n".join(lines) + "\n"


HAPROXY = "/usr/sbin/haproxy"


def ensure_installed() -> str:
    """Debian's HAProxy, installed without starting its service (the labs and benchmarks
    run their own, by PID); its path."""
    if not Path(HAPROXY).exists():
        import subprocess

        subprocess.run([str(SHIPPED.parents[2] / "tools" / "install-deps.sh"), "--no-start",
                        "haproxy"], check=True)
    return HAPROXY
