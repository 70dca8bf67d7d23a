"""`make install` honours DESTDIR and PREFIX and produces what job users can run."""

import os
import stat
import subprocess

from conftest import REPO


def test_make_install_honours_destdir_and_prefix(tmp_path):
    dest, prefix = tmp_path / "stage", "/opt/sqpu"
    proc = subprocess.run(["make", "-C", str(REPO), "install", f"DESTDIR={dest}",
                           f"PREFIX={prefix}"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    root = dest / prefix.lstrip("/")
    plugin = root / "lib/slurm/spank_qpu.so"
    venv = root / "lib/slurm-qpu/venv"
    assert plugin.is_file()
    # the plugin does not link libpython (every Slurm command loads it); its Python half,
    # beside it, does and is loaded only when a callback needs Python
    assert "libpython" not in subprocess.run(["ldd", str(plugin)], capture_output=True,
                                             text=True, check=True).stdout
    half = plugin.with_name("spank_qpu_python.so")
    assert "libpython3" in subprocess.run(["ldd", str(half)], capture_output=True, text=True,
                                          check=True).stdout
    assert (root / "share/slurm-qpu/plugstack.conf.example").is_file()
    assert (root / "share/slurm-qpu/qrmi_config.example.json").is_file()
    # the staged scripts name the final location, not the staging directory
    script = (venv / "bin/slurm-qpu").read_text().splitlines()[0]
    assert script == f"#!{prefix}/lib/slurm-qpu/venv/bin/python"
    assert os.readlink(root / "bin/slurm-qpu") == f"{prefix}/lib/slurm-qpu/venv/bin/slurm-qpu"
    # built with the system Python, and readable by every user (it runs inside their sbatch)
    assert "home = /usr/bin" in (venv / "pyvenv.cfg").read_text()
    for path in (venv, venv / "lib"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o005 == 0o005
    run = subprocess.run([str(venv / "bin/python"), "-c", "import slurm_qpu.spank, pydantic"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
