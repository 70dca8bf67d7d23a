"""The names the C plugin and the Python package share are spelled once, in
slurm_qpu.shim_contract: shim/contract.h is generated from it, the C sources and
job_submit.lua use nothing else, and each shared object exports only what its loader looks
up (Slurm for spank_qpu.so, the plugin for spank_qpu_python.so)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from slurm_qpu import shim_contract
from slurm_qpu.lease.store import LeaseStore
from slurm_qpu.settings import DEFAULT_STATE_DIR, PluginSettings
from slurm_qpu.spank import host

REPO = Path(__file__).resolve().parents[2]
SHIM = REPO / "shim"
LUA = REPO / "src" / "slurm_qpu" / "data" / "job_submit.lua"


def test_the_committed_header_is_what_the_python_spelling_generates() -> None:
    assert (SHIM / "contract.h").read_text() == shim_contract.c_header(), \
        "shim/contract.h is stale: run make -C shim contract"


def code(source: Path) -> str:
    """A C file without its comments (prose may name a file; code must not spell it)."""
    return re.sub(r"/\*.*?\*/", "", source.read_text(), flags=re.S)


def test_the_c_sources_spell_no_shared_name_themselves() -> None:
    values = [shim_contract.PROLOG_OPTION_ENV, shim_contract.JOB_OPTION_ENV,
              shim_contract.OPTION_VARIABLE, shim_contract.DEFAULT_STATE_DIR,
              shim_contract.PYTHON_HALF, shim_contract.HANDLER_MODULE,
              f'"{shim_contract.LEASE_DIR}/', f'"{shim_contract.NODE_PLACEHOLDER}"',
              f'"{shim_contract.OPTION}"']
    for source in sorted([*SHIM.glob("*.c"), *SHIM.glob("*.h")]):
        if source.name == "contract.h":
            continue
        text = code(source)
        for value in values:
            assert value not in text, f"{source.name} spells {value!r}: use contract.h"


def test_the_python_half_defines_and_exports_the_symbol_the_plugin_looks_up() -> None:
    symbol = shim_contract.PYTHON_CALL_SYMBOL
    assert re.search(rf"^int {symbol}\(", (SHIM / "python.c").read_text(), re.M)
    exported = re.findall(r"^\s+(\w+);", (SHIM / "spank_qpu_python.lds").read_text(), re.M)
    assert exported == [symbol]


def test_job_submit_lua_reads_the_option_under_its_contract_names() -> None:
    text = LUA.read_text()
    assert f'local OPTION = "{shim_contract.OPTION_VARIABLE}="' in text
    assert 'local OPTION_FORMS = {OPTION, "SPANK_" .. OPTION}' in text
    assert shim_contract.PROLOG_OPTION_ENV == "SPANK_" + shim_contract.OPTION_VARIABLE


def test_the_python_side_uses_the_contract(tmp_path: Path) -> None:
    assert DEFAULT_STATE_DIR == PluginSettings().state_dir == shim_contract.DEFAULT_STATE_DIR
    assert host.OPTION_ENV == shim_contract.PROLOG_OPTION_ENV
    assert PluginSettings(state_dir=f"/x/{shim_contract.NODE_PLACEHOLDER}").state_path(
        "c1") == Path("/x/c1")
    assert LeaseStore(tmp_path).path(7) == \
        tmp_path / shim_contract.LEASE_DIR / f"7{shim_contract.LEASE_SUFFIX}"


TOOLS = (shutil.which("cc") or shutil.which("gcc")) and shutil.which("make") \
    and shutil.which("nm") and Path("/usr/bin/python3-config").exists() \
    and Path("/usr/include/slurm/spank.h").exists()


@pytest.mark.skipif(not TOOLS and not os.environ.get("CI"),
                    reason="needs a C compiler, make, binutils, python3-dev and libslurm-dev")
def test_each_shared_object_exports_only_what_its_loader_looks_up(tmp_path: Path) -> None:
    build = tmp_path / "shim"
    shutil.copytree(SHIM, build, ignore=shutil.ignore_patterns("*.so", "*.o"))
    subprocess.run(["make", "-s", "-C", str(build), "PYTHON_CONFIG=/usr/bin/python3-config"],
                   check=True, capture_output=True)

    def exported(name: str) -> set[str]:
        out = subprocess.run(["nm", "-D", "--defined-only", str(build / name)],
                             check=True, capture_output=True, text=True).stdout
        return {line.split()[-1] for line in out.splitlines() if line.strip()}

    plugin = exported("spank_qpu.so")
    assert {"slurm_spank_init", "slurm_spank_job_prolog", "slurm_spank_init_post_opt",
            "slurm_spank_task_init", "slurm_spank_job_epilog"} <= plugin
    assert plugin - {s for s in plugin if s.startswith("slurm_spank_")} == {
        "plugin_name", "plugin_type", "plugin_version", "spank_plugin_version"}
    assert exported("spank_qpu_python.so") == {shim_contract.PYTHON_CALL_SYMBOL}
