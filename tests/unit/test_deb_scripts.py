"""The .deb's maintainer scripts that enable and disable the plugin, run with sh against a
temporary root: the plugstack.conf.d link is made on a first install, never over an
admin's file, taken away on removal (a `required` line naming a removed plugin would stop
every sbatch), put back on a reinstall, and not put back by an upgrade after an admin
deleted it. (The package tier runs them for real by apt in a fresh Debian container.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

DEBIAN = Path(__file__).resolve().parents[2] / "debian"
LINK = "etc/slurm/plugstack.conf.d/slurm-qpu.conf"
TARGET = "etc/slurm-qpu/plugstack.conf"


def script(name: str, root: Path) -> str:
    text = (DEBIAN / name).read_text()
    text = text.replace("/etc/", f"{root}/etc/").replace("/var/lib/", f"{root}/var/lib/")
    leftovers = [w for w in text.split() if w.startswith(("/etc", "/var"))]
    assert leftovers == [], f"{name} names paths outside the test root: {leftovers}"
    return text


def run(name: str, root: Path, *args: str) -> str:
    proc = subprocess.run(["sh", "-c", script(name, root), name, *args],
                          capture_output=True, text=True, check=True)
    return proc.stdout + proc.stderr


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / TARGET).parent.mkdir(parents=True)
    (tmp_path / TARGET).write_text("required spank_qpu.so\n")
    return tmp_path


def link(root: Path) -> str | None:
    path = root / LINK
    return str(path.readlink()) if path.is_symlink() else None


def test_a_first_install_enables_the_plugin_with_a_link(root: Path) -> None:
    run("slurm-qpu.postinst", root, "configure", "")
    assert link(root) == str(root / TARGET)
    assert (root / "var/lib/slurm-qpu").stat().st_mode & 0o777 == 0o700


def test_a_first_install_leaves_an_admins_own_file_alone(root: Path) -> None:
    (root / LINK).parent.mkdir(parents=True)
    (root / LINK).write_text("required /opt/site/spank_qpu.so\n")
    run("slurm-qpu.postinst", root, "configure", "")
    assert (root / LINK).read_text() == "required /opt/site/spank_qpu.so\n"


def test_removal_takes_the_link_away_and_a_reinstall_puts_it_back(root: Path) -> None:
    run("slurm-qpu.postinst", root, "configure", "")
    run("slurm-qpu.prerm", root, "remove")
    assert not (root / LINK).is_symlink()
    assert (root / TARGET).exists()  # the admin's configuration stays
    # apt install again: dpkg configures with the version whose config files remained
    run("slurm-qpu.postinst", root, "configure", "0.1.0")
    assert link(root) == str(root / TARGET)
    assert not (root / "var/lib/slurm-qpu/plugstack-link-removed").exists()


def test_removal_leaves_an_admins_own_file_alone(root: Path) -> None:
    (root / LINK).parent.mkdir(parents=True)
    (root / LINK).write_text("# site\n")
    run("slurm-qpu.prerm", root, "remove")
    assert (root / LINK).read_text() == "# site\n"


def test_an_upgrade_keeps_the_link(root: Path) -> None:
    run("slurm-qpu.postinst", root, "configure", "")
    run("slurm-qpu.prerm", root, "upgrade", "0.2.0")
    run("slurm-qpu.postinst", root, "configure", "0.1.0")
    assert link(root) == str(root / TARGET)


def test_an_upgrade_does_not_undo_an_admin_disabling_the_plugin(root: Path) -> None:
    run("slurm-qpu.postinst", root, "configure", "")
    (root / LINK).unlink()  # the admin turns the plugin off
    run("slurm-qpu.prerm", root, "upgrade", "0.2.0")
    run("slurm-qpu.postinst", root, "configure", "0.1.0")
    assert not (root / LINK).exists()
