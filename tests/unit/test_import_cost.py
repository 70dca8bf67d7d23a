"""Every --qpu job starts a fresh Python for its prolog, each step and its epilog: what
those import is paid by every job (BENCHMARKS.md). These tests keep the heavy libraries
(pydantic for the config's models, httpx, the vendor types) out of the paths that do not
need them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("pydantic", "httpx", "slurm_qpu.config", "slurm_qpu.lease.from_vendors",
         "slurm_qpu.acquire.pipeline", "slurm_qpu.vendors.registry",
         "slurm_qpu.vendors.common.http", "socket")


def imported_by(*modules: str) -> set[str]:
    code = ("import importlib, json, sys\n"
            f"for m in {list(modules)!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return set(json.loads(out))


def heavy_in(loaded: set[str]) -> list[str]:
    return sorted(h for h in HEAVY if h in loaded)


@pytest.mark.parametrize("path, modules", [
    ("a job step (init_post_opt, task_init)", ["slurm_qpu.spank", "slurm_qpu.spank.task"]),
    ("sbatch --qpu validation", ["slurm_qpu.spank", "slurm_qpu.spank.submit"]),
])
def test_the_paths_every_step_and_submission_take_import_no_heavy_library(
    path: str, modules: list[str]
) -> None:
    assert heavy_in(imported_by(*modules, "slurm_qpu.log")) == [], path


def test_the_broker_mode_prolog_and_epilog_import_no_config_model_and_no_httpx() -> None:
    loaded = imported_by("slurm_qpu.spank", "slurm_qpu.spank.jobscript", "slurm_qpu.log")
    assert heavy_in(loaded) == []  # http.client (and socket) come with the first request


def test_the_direct_mode_lifecycle_is_still_importable_where_it_is_used() -> None:
    loaded = imported_by("slurm_qpu.lease.from_vendors")
    assert {"slurm_qpu.config", "pydantic"} <= loaded


def test_the_request_folder_is_standard_library_only() -> None:
    """slurm_qpu.request runs in every user's sbatch: nothing but the standard library and
    slurm-qpu's own light modules."""
    from pathlib import Path

    import slurm_qpu.request

    folder = Path(slurm_qpu.request.__file__).parent
    modules = [f"slurm_qpu.request.{p.stem}" for p in sorted(folder.glob("*.py"))
               if p.stem != "__init__"]
    assert len(modules) >= 4
    loaded = imported_by(*modules) - imported_by()  # less what the interpreter brings
    outside = sorted(m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names
                     and m.split(".")[0] != "slurm_qpu")
    assert outside == []
    assert heavy_in(loaded) == []
