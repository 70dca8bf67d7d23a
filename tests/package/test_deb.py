"""The Debian packages: what `make deb` builds, and a fresh Debian machine going from
`apt install ./slurm-qpu*.deb` to a finished `sbatch --qpu` job by running docs/install.md's
quick start as written, then an upgrade while a job holds a QPU, then removal."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, python, version

from slurm_qpu.broker.journal import SCHEMA_VERSION
from slurm_qpu_lab.fresh_debian import FreshDebian, shell_blocks

PLUGIN_DIR = "/usr/lib/x86_64-linux-gnu/slurm-wlm"
LINK = "/etc/slurm/plugstack.conf.d/slurm-qpu.conf"


def slurm_major() -> str:
    return subprocess.run([str(REPO / "debian" / "slurm-major")], capture_output=True,
                          text=True, check=True).stdout.strip()


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True,
                          text=True, check=True).stdout.strip()


def contents(deb: Path) -> list[str]:
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                         check=True).stdout
    return [line.split()[5].removeprefix(".") for line in out.splitlines()]


# ------------------------------------------------------------------ what make deb builds
def test_make_deb_builds_the_plugin_broker_and_emulator_packages(debs: dict[str, Path]) -> None:
    assert set(debs) == {"slurm-qpu", "slurm-qpu-broker", "slurm-qpu-emulator"}
    for deb in debs.values():
        assert field(deb, "Version") == version()


def test_the_plugin_package_depends_on_the_slurm_major_it_was_built_for(
        debs: dict[str, Path]) -> None:
    major = slurm_major()
    year, month = major.split(".")
    depends = field(debs["slurm-qpu"], "Depends")
    assert f"slurm-wlm-basic-plugins (>= {major}~)" in depends
    assert f"slurm-wlm-basic-plugins (<< {year}.{int(month) + 1:02d}~)" in depends
    assert re.search(r"libpython3\.\d+", depends), depends
    assert "slurm-qpu (= " in field(debs["slurm-qpu-broker"], "Depends")


def test_both_halves_of_the_plugin_are_in_slurms_plugin_directory(
        debs: dict[str, Path]) -> None:
    files = contents(debs["slurm-qpu"])
    assert f"{PLUGIN_DIR}/spank_qpu.so" in files
    assert f"{PLUGIN_DIR}/spank_qpu_python.so" in files
    assert "/usr/lib/slurm-qpu/venv/bin/python3" in files
    assert "/usr/bin/slurm-qpu" in files
    assert "/usr/share/man/man8/spank_qpu.8.gz" in files
    assert "/usr/share/man/man1/slurm-qpu-broker.1.gz" in files


def test_the_plugins_package_holds_the_product_only(debs: dict[str, Path]) -> None:
    site = [f for f in contents(debs["slurm-qpu"]) if "/site-packages/" in f]
    assert any(f.endswith("/slurm_qpu/__init__.py") for f in site)
    assert not [f for f in site if "slurm_qpu_emulator" in f or "slurm_qpu_lab" in f
                or "qiskit" in f]
    emulator = contents(debs["slurm-qpu-emulator"])
    assert "/usr/bin/slurm-qpu-emulator" in emulator
    assert "/usr/share/man/man1/slurm-qpu-emulator.1.gz" in emulator
    assert "/usr/share/man/man1/slurm-qpu-emulator.1.gz" not in contents(debs["slurm-qpu"])


def test_admin_files_are_conffiles(debs: dict[str, Path]) -> None:
    def conffiles(deb: Path) -> list[str]:
        out = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True,
                             check=True).stdout
        listing = subprocess.run(["tar", "-xO", "./conffiles"], input=out,
                                 capture_output=True, check=False).stdout.decode()
        return listing.split()

    assert "/etc/slurm-qpu/plugstack.conf" in conffiles(debs["slurm-qpu"])
    assert "/etc/default/slurm-qpu-broker" in conffiles(debs["slurm-qpu-broker"])
    assert "/etc/default/slurm-qpu-emulator" in conffiles(debs["slurm-qpu-emulator"])


def test_no_packaged_file_names_the_build_directory(debs: dict[str, Path],
                                                    tmp_path: Path) -> None:
    for name in ("slurm-qpu", "slurm-qpu-broker"):
        root = tmp_path / name
        subprocess.run(["dpkg-deb", "-x", str(debs[name]), str(root)], check=True)
        found = subprocess.run(["grep", "-rlaF", str(REPO / "build"), str(root)],
                               capture_output=True, text=True).stdout.split()
        assert found == [], found


def assert_sampler_result(out: str) -> None:
    """The sampler payload's result came back from the QPU through the broker's proxy, as
    QRMI's task_runner prints it: simulated, not synthetic, on the job's QPU."""
    assert "slurm-qpu run: ibm_manila: task" in out and "Completed" in out, out
    assert '"SamplerPubResult"' in out and '"backend": "ibm_manila"' in out, out
    assert '"synthetic": false' in out, out


# ------------------------------------------------------------------ a fresh machine
@pytest.fixture(scope="module")
def quickstart(machine: FreshDebian) -> dict[str, str]:
    """docs/install.md's quick start, block by block, as root in the .deb files' directory;
    what the machine looked like after the install step, and the last block's output."""
    blocks = shell_blocks((REPO / "docs" / "install.md").read_text(),
                          "quickstart:begin", "quickstart:end")
    assert len(blocks) >= 4, "the quick start lost its steps"
    seen: dict[str, str] = {}
    for i, block in enumerate(blocks, 1):
        out = machine.check(f"cd /root/debs\n{block}", f"quick start step {i}")
        if i == 1:
            seen["after install"] = machine.check(
                "stat -c '%a %U %G %n' /etc/slurm-qpu /etc/slurm-qpu/qrmi_config.json "
                "/etc/slurm-qpu/plugstack.conf /var/lib/slurm-qpu; readlink "
                f"{LINK}; systemctl is-active slurm-qpu-broker slurm-qpu-emulator; "
                "stat -c 'broker runs as %U' /proc/$(systemctl show -p MainPID --value "
                "slurm-qpu-broker)",
                "the installed files")
    seen["output"] = out
    return seen


def test_docs_quickstart_runs_a_qpu_job_on_a_fresh_debian(quickstart: dict[str, str]) -> None:
    out = quickstart["output"]
    assert re.search(r"job \d+ holds QPU ibm_manila", out), out
    assert_sampler_result(out)


def test_install_sets_safe_permissions_and_enables_the_plugin(
        quickstart: dict[str, str]) -> None:
    lines = quickstart["after install"].splitlines()
    assert "755 root root /etc/slurm-qpu" in lines
    assert "600 slurm-qpu slurm-qpu /etc/slurm-qpu/qrmi_config.json" in lines
    assert "644 root root /etc/slurm-qpu/plugstack.conf" in lines
    assert "700 root root /var/lib/slurm-qpu" in lines
    assert "/etc/slurm-qpu/plugstack.conf" in lines  # the plugstack.conf.d link
    assert lines.count("active") == 2  # broker and emulator started by the install
    assert "broker runs as slurm-qpu" in lines  # its own user, not root


def test_an_unknown_qpu_is_refused_at_submission(machine: FreshDebian,
                                                 quickstart: dict[str, str]) -> None:
    got = machine.run("sbatch --qpu=ibm_typo --wrap true", user="alice")
    assert got.rc != 0
    assert "ibm_typo" in got.out and "ibm_manila" in got.out, got.out


def test_man_pages_are_installed(machine: FreshDebian, quickstart: dict[str, str]) -> None:
    out = machine.check("zcat /usr/share/man/man8/spank_qpu.8.gz | head -20; "
                        "ls /usr/share/man/man1/ | grep slurm-qpu", "man pages")
    assert "spank_qpu" in out and "slurm-qpu-run.1.gz" in out


# ------------------------------------------------------------------ upgrade, removal
def job_state(m: FreshDebian, job: int) -> str:
    return m.check(f"scontrol show job {job} | sed -n 's/.*JobState=\\([A-Z_]*\\).*/\\1/p'",
                   "job state").strip()


def wait_state(m: FreshDebian, job: int, states: tuple[str, ...], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = job_state(m, job)
        if state in states:
            return state
        time.sleep(1)
    raise AssertionError(f"job {job} is {state}, not {states}, after {timeout:.0f} s")


def test_upgrade_while_a_job_holds_a_qpu_loses_nothing(
        machine: FreshDebian, quickstart: dict[str, str], next_debs: dict[str, Path]) -> None:
    m = machine
    m.put([next_debs["slurm-qpu"], next_debs["slurm-qpu-broker"]], "/root/next")
    # a job that holds ibm_manila across the upgrade, and uses it after
    job = int(m.check(
        "cd && sbatch --parsable --qpu=ibm_manila -o upgrade.out --wrap 'sleep 20; "
        "slurm-qpu run ibm_manila /usr/share/slurm-qpu/examples/payloads/ibm_sampler.json'",
        "sbatch", user="alice").strip())
    wait_state(m, job, ("RUNNING",), 60)
    journal = "/var/lib/slurm-qpu-broker/journal.sqlite"
    # Slurm shows the job RUNNING from its allocation on, while its prolog may still be
    # asking the broker: wait for the lease to be in the journal
    held_before: list[list[object]] = []
    deadline = time.monotonic() + 60
    while not held_before and time.monotonic() < deadline:
        held_before = python(m, f"""
import json, sqlite3
db = sqlite3.connect("file:{journal}?mode=ro", uri=True)
print(json.dumps(db.execute("SELECT gen, name, token FROM held WHERE job_id={job} "
                            "AND released_at IS NULL").fetchall()))""")
        if not held_before:
            time.sleep(0.5)
    assert held_before and held_before[0][1] == "ibm_manila", held_before
    pid_before = m.check("systemctl show -p MainPID --value slurm-qpu-broker", "pid").strip()

    m.check("cd /root/next && apt-get install -y ./slurm-qpu_*.deb ./slurm-qpu-broker_*.deb",
            "apt-get install (upgrade)")

    new = f"{version()}+next1"
    assert m.check("dpkg-query -W -f '${Version}' slurm-qpu", "dpkg").strip() == new
    assert m.check("systemctl is-active slurm-qpu-broker", "broker").strip() == "active"
    pid_after = m.check("systemctl show -p MainPID --value slurm-qpu-broker", "pid").strip()
    assert pid_after != pid_before, "the broker was not restarted into the new version"
    assert m.check(f"readlink {LINK}", "link").strip() == "/etc/slurm-qpu/plugstack.conf"
    after = python(m, f"""
import json, sqlite3
db = sqlite3.connect("file:{journal}?mode=ro", uri=True)
version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
held = db.execute("SELECT gen, name, token FROM held WHERE job_id={job} "
                  "AND released_at IS NULL").fetchall()
print(json.dumps({{"version": version, "held": held}}))""")
    assert after["held"] == held_before  # same lease, same session, same token
    assert after["version"] == str(SCHEMA_VERSION)

    # the job used its QPU after the upgrade, with the token it got before it
    assert wait_state(m, job, ("COMPLETED", "FAILED", "CANCELLED"), 180) == "COMPLETED", \
        m.run("cat ~alice/upgrade.out").out
    assert_sampler_result(m.check("cat ~alice/upgrade.out", "job output"))
    # and the new broker released it: the vendor session is closed
    session = held_before[0][2]
    deadline = time.monotonic() + 30
    closed: dict[str, object] = {}
    while time.monotonic() < deadline:
        closed = python(m, f"""
import json
from slurm_qpu_emulator.admin import EmulatorAdmin
s = EmulatorAdmin("http://127.0.0.1:8290").session("{session}")
print(json.dumps({{"accepting_jobs": s["accepting_jobs"], "state": s["state"]}}))""",
                        venv="/usr/lib/slurm-qpu/emulator")
        if closed["accepting_jobs"] is False:
            break
        time.sleep(1)
    assert closed["accepting_jobs"] is False and closed["state"] in ("inactive", "closed"), \
        closed


def test_remove_keeps_the_admins_config_and_leaves_slurm_working(
        machine: FreshDebian, quickstart: dict[str, str]) -> None:
    m = machine
    m.check("echo '# site edit' >> /etc/slurm-qpu/plugstack.conf", "edit")
    m.check("apt-get remove -y slurm-qpu-emulator slurm-qpu-broker slurm-qpu", "apt remove")
    state = m.check(
        f"ls {PLUGIN_DIR}/spank_qpu.so 2>&1 || true; ls {LINK} 2>&1 || true; "
        "tail -1 /etc/slurm-qpu/plugstack.conf; "
        "stat -c '%a %U %n' /etc/slurm-qpu/qrmi_config.json; "
        "grep -c ibm_manila /etc/slurm-qpu/qrmi_config.json; "
        "ls /var/lib/slurm-qpu-broker/journal.sqlite /etc/default/slurm-qpu-broker",
        "after removal")
    assert "spank_qpu.so': No such file" in state
    assert f"{LINK}': No such file" in state  # Slurm no longer looks for the plugin
    assert "# site edit" in state
    assert "600 slurm-qpu /etc/slurm-qpu/qrmi_config.json" in state
    assert "/var/lib/slurm-qpu-broker/journal.sqlite" in state
    # Slurm itself still runs jobs (a dangling 'required' line would stop every sbatch)
    m.check("systemctl restart slurmd slurmctld; "
            "timeout 60 sh -c 'until sinfo -h -o %t | grep -qx idle; do sleep 1; done'",
            "slurm restart")
    assert "ok" in m.check("cd && sbatch --wait -o plain.out --wrap 'echo ok' >/dev/null; "
                           "cat plain.out", "a job without the plugin", user="alice")
    # installing again puts the plugin back with the admin's configuration
    m.check("cd /root/debs && apt-get install -y ./slurm-qpu_*.deb", "reinstall")
    assert m.check(f"readlink {LINK}; tail -1 /etc/slurm-qpu/plugstack.conf",
                   "after reinstall").split() == ["/etc/slurm-qpu/plugstack.conf", "#", "site",
                                                  "edit"]
