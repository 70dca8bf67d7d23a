"""The package tier: build the packages as `make deb` does, install them on a fresh Debian
machine (a container booting systemd, see slurm_qpu_lab.fresh_debian) by following
docs/install.md, upgrade them while a job holds a QPU, remove them.

The packages are built once per session: the current version, and the same tree as the
next version (without the emulator) for the upgrade test. A failing test gets the
machine's failed units and the daemons' logs.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slurm_qpu_lab.fresh_debian import FreshDebian

REPO = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("SLURM_QPU_PACKAGES", "/tmp/slurm-qpu-packages"))

_machine: FreshDebian | None = None


def version() -> str:
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise AssertionError("no version in pyproject.toml")


def build(out: Path, env: dict[str, str]) -> dict[str, Path]:
    """tools/build-deb into ``out``: {package name: .deb}. SLURM_QPU_PACKAGES_REUSE=1
    takes what an earlier run left there (while working on the tests themselves)."""
    found = {p.name.split("_")[0]: p for p in out.glob("*.deb")}
    if found and os.environ.get("SLURM_QPU_PACKAGES_REUSE"):
        return found
    subprocess.run(["rm", "-rf", str(out)], check=True)
    proc = subprocess.run([str(REPO / "tools" / "build-deb"), str(out)], cwd=REPO,
                          env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, f"build-deb failed:\n{proc.stdout}\n{proc.stderr}"
    return {p.name.split("_")[0]: p for p in out.glob("*.deb")}


@pytest.fixture(scope="session")
def debs() -> dict[str, Path]:
    if os.geteuid() != 0:
        pytest.fail("the package tier needs root (dpkg-buildpackage's deps, dockerd)")
    subprocess.run([str(REPO / "tools" / "install-deps.sh"), "debhelper", "dpkg-dev",
                    "debootstrap", "groff-base"], check=True)
    return build(OUT / "current", {"DEB_VERSION": ""})


@pytest.fixture(scope="session")
def next_debs(debs: dict[str, Path]) -> dict[str, Path]:
    """The same tree as the next package version: what an upgrade installs."""
    return build(OUT / "next", {"DEB_VERSION": f"{version()}+next1",
                       "DEB_BUILD_PROFILES": "noemulator"})


@pytest.fixture(scope="module")
def machine(debs: dict[str, Path]) -> Iterator[FreshDebian]:
    global _machine
    m = FreshDebian()
    m.start()
    m.put(list(debs.values()), "/root/debs")
    _machine = m
    yield m
    _machine = None
    if not os.environ.get("SLURM_QPU_FRESH_KEEP"):
        m.remove()


def python(m: FreshDebian, code: str, venv: str = "/usr/lib/slurm-qpu/venv") -> Any:
    """Run ``code`` with a venv's Python on the machine; it prints one JSON value."""
    out = m.check(f"{venv}/bin/python - <<'PY'\n{code}\nPY", "python on the machine")
    return json.loads(out.strip().splitlines()[-1])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and _machine is not None and "machine" in item.fixturenames:
        try:
            report.sections.append(("fresh Debian machine", _machine.logs()))
        except Exception as exc:  # the logs must never hide the failure itself
            report.sections.append(("fresh Debian machine", f"no logs: {exc}"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here is in the package tier; building the packages (the emulator's venv
    carries Qiskit) takes most of the first test's time, hence the long timeout."""
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.package)
            item.add_marker(pytest.mark.timeout(2400))
