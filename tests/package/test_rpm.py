"""`make rpm`: packaging/rpm/slurm-qpu.spec built by Debian's rpmbuild (--nodeps: this machine
has no Slurm RPMs), then checked package by package with `rpm -qp` and the unpacked payloads.
Installing the RPMs needs an RPM distribution: packaging/rpm/README.md has that check."""

from __future__ import annotations

import gzip
import json
import os
import platform
import re
import stat
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.package, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[2]
TOPDIR = REPO / "build/rpm"  # rpmbuild's _topdir: BUILD/ and BUILDROOT/ are under it
OUT = REPO / "build/packages/rpm"
SLURM_VERSION_H = Path("/usr/include/slurm/slurm_version.h")
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
RELEASE = f"{VERSION}-1"
PLUGIN_DIR = "/usr/lib64/slurm"
VENV = "/usr/lib/slurm-qpu/venv"
EMULATOR = "/usr/lib/slurm-qpu/emulator"
UNIT_DIR = "/usr/lib/systemd/system"
PLUGSTACK = "/etc/slurm-qpu/plugstack.conf"  # the conffile, the same as Debian's
LINK = "/etc/slurm/plugstack.conf.d/slurm-qpu.conf"  # made by %post, no packaged file
MARKER = "/var/lib/slurm-qpu/plugstack-link-removed"
INCLUDE = "include /etc/slurm/plugstack.conf.d/*.conf"
RPMFILE_CONFIG, RPMFILE_NOREPLACE = 1, 16


@dataclass(frozen=True)
class Entry:
    mode: int
    user: str
    group: str
    flags: int
    link: str

    @property
    def perms(self) -> int:
        return self.mode & 0o7777


@dataclass
class Rpm:
    path: Path
    root: Path  # the payload, unpacked

    def query(self, *args: str) -> str:
        return subprocess.run(["rpm", "-qp", *args, str(self.path)], capture_output=True,
                              text=True, check=True).stdout

    def tag(self, name: str) -> str:
        return self.query("--queryformat", f"%{{{name}}}")

    def files(self) -> dict[str, Entry]:
        out = self.query("--queryformat", "[%{FILENAMES}\t%{FILEMODES}\t%{FILEUSERNAME}\t"
                         "%{FILEGROUPNAME}\t%{FILEFLAGS}\t%{FILELINKTOS}\n]")
        entries = {}
        for line in out.splitlines():
            name, mode, user, group, flags, link = line.split("\t")
            entries[name] = Entry(int(mode), user, group, int(flags), link)
        return entries

    def requires(self) -> list[str]:
        return self.query("--requires").splitlines()

    def scripts(self) -> dict[str, str]:
        """scriptlet name (preinstall, postinstall, preuninstall, postuninstall) -> body"""
        parts = re.split(r"^(\w+) scriptlet \(using [^)]*\):\n", self.query("--scripts"),
                         flags=re.M)
        return dict(zip(parts[1::2], parts[2::2], strict=True))

    def read(self, path: str) -> str:
        return (self.root / path.lstrip("/")).read_text()


def slurm_major(header: Path) -> tuple[str, str]:
    """(22.05, 22.06): the release a slurm_version.h belongs to, and the first one past it"""
    match = re.search(r"^#define\s+SLURM_VERSION_NUMBER\s+(0x[0-9a-fA-F]+)", header.read_text(),
                      re.M)
    assert match, f"no SLURM_VERSION_NUMBER in {header}"
    number = int(match.group(1), 16)
    major, minor = number >> 16 & 0xFF, number >> 8 & 0xFF
    return f"{major}.{minor:02d}", f"{major}.{minor + 1:02d}"


@pytest.fixture(scope="module")
def rpms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Rpm]]:
    # no skip anywhere: without rpmbuild (tools/install-deps.sh installs it) this fails
    proc = subprocess.run(["make", "-C", str(REPO), "rpm"], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        pytest.fail(f"make rpm failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n"
                    f"{proc.stderr[-4000:]}")
    built = {}
    for path in sorted(OUT.glob("*.rpm")):
        name = subprocess.run(["rpm", "-qp", "--queryformat", "%{NAME}", str(path)],
                              capture_output=True, text=True, check=True).stdout
        root = tmp_path_factory.mktemp(name)
        # rpm2archive (Debian's rpm package has it) turns the payload into a tar stream
        with path.open("rb") as rpm_file:
            archive = subprocess.run(["rpm2archive", "-n", "-"], stdin=rpm_file,
                                     capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
        built[name] = Rpm(path, root)
    yield built


def test_the_three_packages_are_built(rpms: dict[str, Rpm]) -> None:
    assert sorted(rpms) == ["slurm-qpu", "slurm-qpu-broker", "slurm-qpu-emulator"]
    arch = platform.machine()
    for name, rpm in rpms.items():
        assert rpm.tag("VERSION") == VERSION
        assert rpm.tag("LICENSE") == "GPL-2.0-or-later"
        assert rpm.tag("ARCH") == ("noarch" if name == "slurm-qpu-broker" else arch)
        assert rpm.path.name == f"{name}-{RELEASE}.{rpm.tag('ARCH')}.rpm"


def test_plugin_both_halves_in_slurms_plugin_dir(rpms: dict[str, Rpm]) -> None:
    files = rpms["slurm-qpu"].files()
    for half in ("spank_qpu.so", "spank_qpu_python.so"):
        assert files[f"{PLUGIN_DIR}/{half}"].perms == 0o755
    # the half that embeds Python brings the libpython dependency; the plugin none
    requires = rpms["slurm-qpu"].requires()
    assert any(re.fullmatch(r"libpython3\.\d+\.so\.1\.0\(\)\(64bit\)", r) for r in requires)
    assert any(re.fullmatch(r"python\(abi\) = 3\.\d+", r) for r in requires)


def test_plugin_requires_the_slurm_major_it_was_built_against(rpms: dict[str, Rpm]) -> None:
    major, following = slurm_major(SLURM_VERSION_H)  # 22.05 -> 22.06 on Debian 12
    slurm = [r for r in rpms["slurm-qpu"].requires() if re.match(r"slurm\b(?!-)", r)]
    assert sorted(slurm) == sorted([f"slurm >= {major}", f"slurm < {following}"])
    assert major in rpms["slurm-qpu"].tag("DESCRIPTION")


def test_venv_and_command(rpms: dict[str, Rpm]) -> None:
    rpm = rpms["slurm-qpu"]
    files = rpm.files()
    # the system interpreter, by symlink (a copy would miss the system's Python updates)
    for python in ("python", "python3"):
        assert files[f"{VENV}/bin/{python}"].link, f"{VENV}/bin/{python} is no symlink"
    site = [f for f in files if re.fullmatch(
        rf"{VENV}/lib/python3\.\d+/site-packages/slurm_qpu/__init__\.py", f)]
    assert site, "slurm_qpu is not in the venv"
    assert any(f.startswith(f"{VENV}/lib/python3.") and "/pydantic/" in f for f in files)
    assert files["/usr/bin/slurm-qpu"].link == f"{VENV}/bin/slurm-qpu"
    # the scripts name the venv's final path, not the build root
    assert rpm.read(f"{VENV}/bin/slurm-qpu").splitlines()[0] == f"#!{VENV}/bin/python"
    assert "home = /usr/bin" in rpm.read(f"{VENV}/pyvenv.cfg")
    # the node's lease directory
    state = files["/var/lib/slurm-qpu"]
    assert (state.perms, state.user, state.group) == (0o700, "root", "root")
    # the unpacked venv runs (a venv finds its packages from where its python is)
    run = subprocess.run([str(rpm.root / VENV.lstrip("/") / "bin/python"), "-B", "-c",
                          "import slurm_qpu.spank, pydantic, httpx"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr


def test_plugstack_conffile_is_debians_line(rpms: dict[str, Rpm]) -> None:
    rpm = rpms["slurm-qpu"]
    files = rpm.files()
    assert rpm.query("--configfiles").splitlines() == [PLUGSTACK]
    conf = files[PLUGSTACK]
    assert conf.flags & (RPMFILE_CONFIG | RPMFILE_NOREPLACE) == RPMFILE_CONFIG | RPMFILE_NOREPLACE
    assert (conf.perms, conf.user, conf.group) == (0o644, "root", "root")
    # the Debian file unchanged: spank_qpu.so relative, found in Slurm's PluginDir
    # (/usr/lib64/slurm on RPM distributions, where the plugin is)
    assert rpm.read(PLUGSTACK) == (REPO / "packaging/plugstack-slurm-qpu.conf").read_text()
    lines = [line for line in rpm.read(PLUGSTACK).splitlines()
             if line.strip() and not line.startswith("#")]
    assert len(lines) == 1
    assert lines[0].split()[:2] == ["required", "spank_qpu.so"]
    assert f"venv={VENV}" in lines[0].split()
    # users' sbatch reads it: the directory is the main package's, readable by all
    etc = files["/etc/slurm-qpu"]
    assert stat.S_ISDIR(etc.mode)
    assert (etc.perms, etc.user, etc.group) == (0o755, "root", "root")
    # the link is %post's: no package lists it, so rpm never replaces an admin's file there
    for package in rpms.values():
        assert LINK not in package.files()
    assert "/etc/slurm/plugstack.conf" not in files


class Node:
    """/etc and /var/lib of a node under a temporary root, on which the slurm-qpu package's
    %post and %preun run as rpm runs them ($1: the number of instances installed after the
    transaction), with every path they name moved under the root."""

    def __init__(self, root: Path, scripts: dict[str, str]) -> None:
        self.root = root
        self.scripts = scripts
        self.link = self.path(LINK)
        self.marker = self.path(MARKER)
        self.plugstack = self.path("/etc/slurm/plugstack.conf")
        # what the payload puts there before %post runs
        self.path(PLUGSTACK).parent.mkdir(parents=True)
        self.path(PLUGSTACK).write_text((REPO / "packaging/plugstack-slurm-qpu.conf").read_text())
        self.path("/var/lib/slurm-qpu").mkdir(parents=True, mode=0o700)
        self.link.parent.mkdir(parents=True)

    def path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def run(self, scriptlet: str, arg: int) -> str:
        """the scriptlet's stderr (it must succeed and print nothing on stdout)"""
        script = re.sub(r"(?<![\w.-])/(etc|var/lib)/", lambda m: f"{self.root}/{m[1]}/",
                        self.scripts[scriptlet])
        outside = [p for p in re.findall(r"(?<![\w.$-])/[\w./*-]+", script)
                   if not p.startswith(f"{self.root}/") and p != "/dev/null"]
        assert not outside, f"{scriptlet} names paths outside the test root: {outside}"
        proc = subprocess.run(["sh", "-c", script, scriptlet, str(arg)], capture_output=True,
                              text=True, check=False)
        assert (proc.returncode, proc.stdout) == (0, ""), proc
        return proc.stderr

    def post(self, arg: int) -> str:
        return self.run("postinstall", arg)

    def preun(self, arg: int) -> str:
        return self.run("preuninstall", arg)

    def ours(self) -> bool:
        return self.link.is_symlink() and os.readlink(self.link) == str(self.path(PLUGSTACK))

    def include(self, line: str) -> str:
        """a plugstack.conf line as it reads under the root"""
        return line.replace("/etc/", f"{self.root}/etc/")


@pytest.fixture
def node(rpms: dict[str, Rpm], tmp_path: Path) -> Node:
    scripts = rpms["slurm-qpu"].scripts()
    assert {"postinstall", "preuninstall"} <= set(scripts)
    return Node(tmp_path, scripts)


def test_scriptlets_link_the_plugin_on_install_and_unlink_it_on_erase(node: Node) -> None:
    node.plugstack.write_text(node.include(INCLUDE) + "\n")
    # first install: the link, to the conffile
    assert node.post(1) == ""
    assert node.ours()
    # an upgrade (new %post, then the old package's %preun) keeps it
    assert node.post(2) == "" and node.preun(1) == ""
    assert node.ours() and not node.marker.exists()
    # erase: the link goes (no 'required' line naming a removed plugin), the marker stays
    assert node.preun(0) == ""
    assert not node.link.exists() and not node.link.is_symlink()
    assert node.marker.exists()
    # reinstall after the erase: the link again, the marker gone
    assert node.post(1) == ""
    assert node.ours() and not node.marker.exists()
    # as on Debian, the marker alone brings the link back (an upgrade after it)
    node.link.unlink()
    node.marker.touch()
    assert node.post(2) == ""
    assert node.ours() and not node.marker.exists()
    # an admin deleted the link to disable the plugin: upgrades never put it back, and an
    # erase leaves no marker (nothing of ours was there)
    node.link.unlink()
    assert node.post(2) == "" and node.preun(1) == ""
    assert not node.link.is_symlink()
    assert node.preun(0) == ""
    assert not node.marker.exists()
    # the admin's plugstack.conf is never touched
    assert node.plugstack.read_text() == node.include(INCLUDE) + "\n"


@pytest.mark.parametrize("kind", ["file", "link elsewhere", "dangling link"])
def test_scriptlets_leave_an_admins_file_alone(node: Node, kind: str) -> None:
    node.plugstack.write_text(node.include(INCLUDE) + "\n")
    target = node.root / "admin.conf"
    if kind == "file":
        node.link.write_text("required /opt/site/spank_qpu.so\n")
    else:
        if kind == "link elsewhere":
            target.write_text("required spank_qpu.so\n")
        node.link.symlink_to(target)
    before = os.readlink(node.link) if node.link.is_symlink() else node.link.read_text()
    for scriptlet, arg in (("postinstall", 1), ("postinstall", 2), ("preuninstall", 1),
                           ("preuninstall", 0), ("postinstall", 1)):
        assert node.run(scriptlet, arg) == ""  # no error, no note
        after = os.readlink(node.link) if node.link.is_symlink() else node.link.read_text()
        assert after == before, f"{scriptlet} {arg} changed the admin's {kind}"
        assert not node.marker.exists()


def test_post_creates_a_missing_plugstack_conf_with_the_include(node: Node) -> None:
    assert not node.plugstack.exists()
    assert node.post(1) == ""
    assert node.plugstack.read_text() == node.include(INCLUDE) + "\n"
    assert node.plugstack.stat().st_mode & 0o7777 == 0o644
    assert node.post(2) == ""  # and says nothing on upgrades


@pytest.mark.parametrize("line", [INCLUDE, "include /etc/slurm/plugstack.conf.d/*",
                                  "  include   plugstack.conf.d/*.conf"])
def test_post_is_quiet_when_plugstack_conf_includes_the_directory(node: Node, line: str) -> None:
    text = f"# site plugins\noptional /usr/lib64/slurm/other.so\n{node.include(line)}\n"
    node.plugstack.write_text(text)
    assert node.post(1) == ""
    assert node.plugstack.read_text() == text


@pytest.mark.parametrize("text", ["optional /usr/lib64/slurm/other.so\n",
                                  f"# {INCLUDE}\n", ""])
def test_post_notes_a_plugstack_conf_without_the_include(node: Node, text: str) -> None:
    node.plugstack.write_text(node.include(text))
    note = node.post(1)
    assert node.ours()
    # one note, naming the line to add; the admin's file unchanged
    assert len(note.splitlines()) == 1 and "NOTE" in note, note
    assert f"'{node.include(INCLUDE)}'" in note
    assert node.plugstack.read_text() == node.include(text)
    # on upgrades too, while the plugin is enabled; not once the admin disabled it
    assert node.post(2) == note
    node.link.unlink()
    assert node.post(2) == ""


def test_man_pages(rpms: dict[str, Rpm]) -> None:
    rpm = rpms["slurm-qpu"]
    files = rpm.files()
    pages = {f for f in files if f.startswith("/usr/share/man/")}
    for page in ("man1/slurm-qpu.1.gz", "man1/slurm-qpu-broker.1.gz",
                 "man1/slurm-qpu-config.1.gz", "man8/spank_qpu.8.gz"):
        assert f"/usr/share/man/{page}" in pages
    text = gzip.decompress((rpm.root / "usr/share/man/man8/spank_qpu.8.gz").read_bytes())
    assert text.decode().startswith((".TH", ".\\\""))
    # the docs (the broker's unit points at security.md there) and the examples
    for doc in ("README.md", "install.md", "security.md"):
        assert f"/usr/share/doc/slurm-qpu/{doc}" in files
    for example in ("qrmi_config.example.json", "plugstack.conf.example",
                    "examples/payloads/ibm_sampler.json"):
        assert f"/usr/share/slurm-qpu/{example}" in files


def test_broker_unit_sysconfig_user_and_config(rpms: dict[str, Rpm]) -> None:
    rpm = rpms["slurm-qpu-broker"]
    files = rpm.files()
    unit = rpm.read(f"{UNIT_DIR}/slurm-qpu-broker.service")
    assert "EnvironmentFile=-/etc/sysconfig/slurm-qpu-broker" in unit.splitlines()
    assert "/etc/default/" not in unit
    sysconfig = files["/etc/sysconfig/slurm-qpu-broker"]
    assert sysconfig.flags & RPMFILE_NOREPLACE and sysconfig.flags & RPMFILE_CONFIG
    config = files["/etc/slurm-qpu/qrmi_config.json"]
    assert (config.perms, config.user, config.group) == (0o600, "slurm-qpu", "slurm-qpu")
    assert config.flags & RPMFILE_NOREPLACE and config.flags & RPMFILE_CONFIG
    assert json.loads(rpm.read("/etc/slurm-qpu/qrmi_config.json")) == {"resources": []}
    # its config is in the main package's /etc/slurm-qpu (0755 root, users read plugstack.conf)
    assert "/etc/slurm-qpu" not in files
    for path in ("/var/lib/slurm-qpu-broker", "/var/log/slurm-qpu-broker"):
        entry = files[path]
        assert (entry.perms, entry.user, entry.group) == (0o700, "slurm-qpu", "slurm-qpu")
    scripts = rpm.scripts()
    assert re.search(r"getent passwd slurm-qpu .*\|\|.*useradd -r .*slurm-qpu",
                     scripts["preinstall"], re.S)
    assert "-d /var/lib/slurm-qpu-broker" in scripts["preinstall"]
    assert "nologin" in scripts["preinstall"]
    assert "slurm-qpu-broker.service" in scripts["postinstall"]
    assert "slurm-qpu-broker.service" in scripts["preuninstall"]
    assert "try-restart" in scripts["postuninstall"]  # restarted on upgrade
    requires = rpm.requires()
    assert f"slurm-qpu = {RELEASE}" in requires
    assert "munge" in requires


def test_the_plugins_package_holds_the_product_only(rpms: dict[str, Rpm]) -> None:
    files = rpms["slurm-qpu"].files()
    site = [f for f in files if "/site-packages/" in f]
    assert any(f.endswith("/slurm_qpu/__init__.py") for f in site)
    assert not [f for f in site if "slurm_qpu_emulator" in f or "slurm_qpu_lab" in f
                or "qiskit" in f]
    assert not [f for f in files if "slurm-qpu-emulator" in f]


def test_emulator_venv_and_unit(rpms: dict[str, Rpm]) -> None:
    rpm = rpms["slurm-qpu-emulator"]
    files = rpm.files()
    assert any(re.fullmatch(rf"{EMULATOR}/lib/python3\.\d+/site-packages/qiskit_ibm_runtime/"
                            r"__init__\.py", f) for f in files)
    assert rpm.read(f"{EMULATOR}/bin/slurm-qpu-emulator").splitlines()[0] == \
        f"#!{EMULATOR}/bin/python"
    assert files[f"{EMULATOR}/bin/python"].link
    unit = rpm.read(f"{UNIT_DIR}/slurm-qpu-emulator.service")
    assert "EnvironmentFile=-/etc/sysconfig/slurm-qpu-emulator" in unit.splitlines()
    assert f"ExecStart={EMULATOR}/bin/slurm-qpu-emulator " in unit
    assert files["/etc/sysconfig/slurm-qpu-emulator"].flags & RPMFILE_NOREPLACE
    assert files["/usr/bin/slurm-qpu-emulator"].link == f"{EMULATOR}/bin/slurm-qpu-emulator"
    assert "/usr/share/man/man1/slurm-qpu-emulator.1.gz" in files
    assert "User=slurm-qpu-emulator" in unit.splitlines()
    assert re.search(r"getent passwd slurm-qpu-emulator .*\|\|.*useradd -r .*slurm-qpu-emulator",
                     rpm.scripts()["preinstall"], re.S)
    assert "try-restart" in rpm.scripts()["postuninstall"]
    # its private wheels' libraries are no dependency and no capability of the package
    assert not [p for p in rpm.query("--provides").splitlines() if ".so" in p]


def test_no_file_names_the_build_root(rpms: dict[str, Rpm]) -> None:
    # the build root and the build dir are both under TOPDIR: neither may leak into a file
    # (venv scripts, pyvenv.cfg, activate, .pyc file names, debug info of the plugin)
    needle = os.fsencode(TOPDIR)
    leaks = []
    for rpm in rpms.values():
        for dirpath, _dirs, names in os.walk(rpm.root):
            for name in names:
                path = Path(dirpath, name)
                link = path.is_symlink()
                content = os.fsencode(os.readlink(path)) if link else path.read_bytes()
                if needle in content:
                    leaks.append(str(path.relative_to(rpm.root)))
    assert not leaks, f"{len(leaks)} files name {TOPDIR}: {leaks[:20]}"
