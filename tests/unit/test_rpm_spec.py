"""packaging/rpm/slurm-qpu.spec stays in step with the tree, without rpmbuild: its version is
pyproject's, `make rpm` names the tarball after that version, every systemd unit and its
settings file is packaged, and every file of the tree the spec installs exists."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "packaging/rpm/slurm-qpu.spec"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def spec_text() -> str:
    return SPEC.read_text()


def section(name: str) -> str:
    """the body of a spec section (%files, %files broker, %install...), up to the next one"""
    match = re.search(rf"^%{name}\n(.*?)(?=^%(?:files|changelog|pre|post|preun|postun)\b)",
                      spec_text(), re.M | re.S)
    assert match, f"no %{name} in {SPEC}"
    return match.group(1)


def all_files_sections() -> str:
    return "".join(re.findall(r"^%files.*?\n(.*?)(?=^%files|^%changelog)", spec_text(),
                              re.M | re.S))


def test_spec_version_is_pyprojects() -> None:
    version = re.search(r"^Version:\s+(\S+)$", spec_text(), re.M)
    assert version and version[1] == VERSION
    # the changelog's newest entry is for it too
    entry = re.search(r"^%changelog\n\* .* - (\S+)$", spec_text(), re.M)
    assert entry and entry[1].split("-")[0] == VERSION


def test_make_rpm_builds_the_tarball_of_pyprojects_version() -> None:
    dry = subprocess.run(["make", "-n", "-C", str(REPO), "rpm"], capture_output=True,
                         text=True, check=True).stdout
    assert f"build/rpm/SOURCES/slurm-qpu-{VERSION}.tar.gz" in dry
    assert f"--prefix=slurm-qpu-{VERSION}/" in dry
    assert f"'s,^,slurm-qpu-{VERSION}/,S'" in dry  # the work-tree variant: same prefix
    assert re.search(r"^Source0:\s+slurm-qpu-%\{version\}\.tar\.gz$", spec_text(), re.M)
    assert "rpmbuild -bb" in dry and "packaging/rpm/slurm-qpu.spec" in dry


def test_every_systemd_unit_and_its_settings_are_packaged() -> None:
    files = all_files_sections()
    units = sorted(p.stem for p in (REPO / "systemd").glob("*.service"))
    assert units, "no unit under systemd/"
    install = section("install")
    for unit in units:
        assert f"%{{_unitdir}}/{unit}.service" in files, unit
        assert f"%systemd_post {unit}.service" in spec_text(), unit
        assert f"%systemd_postun_with_restart {unit}.service" in spec_text(), unit
        assert re.search(rf"^for unit in .*\b{unit}\b", install, re.M), unit
        if (REPO / "systemd" / f"{unit}.default").exists():
            assert f"%config(noreplace) %{{_sysconfdir}}/sysconfig/{unit}\n" in files, unit
    # the spec installs no unit the tree does not have
    for unit in re.findall(r"%\{_unitdir\}/([\w-]+)\.service", files):
        assert unit in units


def test_every_unit_user_is_created_by_its_package() -> None:
    for unit in (REPO / "systemd").glob("*.service"):
        users = re.findall(r"^User=(\S+)$", unit.read_text(), re.M)
        for user in users:
            pre = section(f"pre {unit.stem.removeprefix('slurm-qpu-')}").replace("\\\n", " ")
            assert re.search(rf"^getent passwd {user} >/dev/null \|\| +useradd -r .* {user}$",
                             pre, re.M), f"{unit.name} runs as {user}: no useradd in its %pre"


def test_every_source_file_the_spec_installs_exists() -> None:
    body = "\n".join(line for line in spec_text().splitlines()
                     if not line.lstrip().startswith("#"))
    paths = set(re.findall(r"(?<![\w/%}])((?:packaging|man|systemd|src)/[\w./-]*\w)",
                           body))
    assert "packaging/plugstack-slurm-qpu.conf" in paths
    for path in sorted(paths):
        assert (REPO / path).exists(), f"the spec reads {path}, which is missing"


def test_packages_and_files_of_the_layout() -> None:
    files = spec_text()
    for package in ("broker", "emulator"):
        assert re.search(rf"^%package {package}$", files, re.M)
        assert re.search(rf"^%files {package}$", files, re.M)
    main = section("files")
    assert "%{_libdir}/slurm/spank_qpu.so\n" in main
    assert "%{_libdir}/slurm/spank_qpu_python.so\n" in main
    # the plugin's line in /etc/slurm-qpu, which users' sbatch must read: the main package's
    assert "%dir %attr(0755,root,root) %{_sysconfdir}/slurm-qpu\n" in main
    assert ("%config(noreplace) %attr(0644,root,root) "
            "%{_sysconfdir}/slurm-qpu/plugstack.conf\n") in main
    broker = section("files broker")
    assert ("%config(noreplace) %attr(0600,slurm-qpu,slurm-qpu) "
            "%{_sysconfdir}/slurm-qpu/qrmi_config.json") in broker
    assert not re.search(r"%\{_sysconfdir\}/slurm-qpu$", broker, re.M)
    # the link in plugstack.conf.d is %post's: listed nowhere, not even as %ghost
    assert "plugstack.conf.d/slurm-qpu.conf" not in all_files_sections()


def test_plugstack_line_is_installed_as_debian_has_it() -> None:
    install = section("install")
    assert ("install -m 0644 packaging/plugstack-slurm-qpu.conf "
            "%{buildroot}%{_sysconfdir}/slurm-qpu/plugstack.conf\n") in install
    # spank_qpu.so stays relative (Slurm's PluginDir): no rewriting of that file
    assert not [line for line in install.splitlines()
                if "sed" in line and "plugstack" in line]
    rules = (REPO / "debian/rules").read_text()
    assert "packaging/plugstack-slurm-qpu.conf $(PKG)/etc/slurm-qpu/plugstack.conf" in rules


def test_scriptlets_make_and_remove_the_link_as_debians() -> None:
    link = "LINK=%{_sysconfdir}/slurm/plugstack.conf.d/slurm-qpu.conf\n"
    marker = "/var/lib/slurm-qpu/plugstack-link-removed"
    post, preun = section("post"), section("preun")
    debian_post = (REPO / "debian/slurm-qpu.postinst").read_text()
    debian_prerm = (REPO / "debian/slurm-qpu.prerm").read_text()
    assert marker in debian_post and marker in debian_prerm
    # first install or the marker; never over a file or link already there
    assert link in post and f"DISABLED={marker}\n" in post
    assert 'if [ "$1" -eq 1 ] || [ -e "$DISABLED" ]; then' in post
    assert 'if [ ! -e "$LINK" ] && [ ! -L "$LINK" ]; then' in post
    assert 'ln -s %{_sysconfdir}/slurm-qpu/plugstack.conf "$LINK"' in post
    assert 'rm -f "$DISABLED"' in post
    # the include of plugstack.conf.d: a note, or a new plugstack.conf; never an edit
    assert "include %{_sysconfdir}/slurm/plugstack.conf.d/*.conf" in post
    assert re.search(r"^\s+echo .*NOTE.*>&2$", post, re.M)
    assert not re.search(r">>|sed -i", post)
    # erase only, our link only, and the marker
    assert link in preun
    assert ('if [ "$1" -eq 0 ] && [ "$(readlink "$LINK" 2>/dev/null)" = '
            '%{_sysconfdir}/slurm-qpu/plugstack.conf ]; then') in preun
    assert f": > {marker}" in preun
