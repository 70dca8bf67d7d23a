"""The layout keeps its promises: a vendor is one folder that nothing outside it names
(except the job API's SDK helpers, which exist to name it), and the broker's server, the
acquisition pipeline and the plugin know vendors only through the registry and the
contracts in vendors/common."""

from __future__ import annotations

import ast
from pathlib import Path

from slurm_qpu.vendors.builtin import BUILTIN

SRC = Path(__file__).resolve().parents[2] / "src" / "slurm_qpu"
VENDORS = SRC / "vendors"
# the modules of vendors/ any layer may use: the contracts, the registry, the records
SHARED = ("slurm_qpu.vendors.common", "slurm_qpu.vendors.registry", "slurm_qpu.vendors.record",
          "slurm_qpu.vendors.builtin", "slurm_qpu.vendors.type_names")
# the job API: slurm_qpu.client's helpers build each vendor's SDK objects
MAY_NAME_A_VENDOR = {SRC / "client.py"}


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_every_built_in_vendor_is_a_folder_whose_init_holds_its_record() -> None:
    for module in BUILTIN.values():
        folder = SRC.parent / Path(*module.split("."))
        assert (folder / "__init__.py").is_file(), module
        assert "VENDOR = Vendor(" in (folder / "__init__.py").read_text(), module


def test_nothing_outside_a_vendors_folder_names_it() -> None:
    folders = set(BUILTIN.values())
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if VENDORS in path.parents or path in MAY_NAME_A_VENDOR:
            continue
        named = {m for m in imported_modules(path)
                 if any(m == f or m.startswith(f + ".") for f in folders)}
        if named:
            offenders.append(f"{path.relative_to(SRC)}: {sorted(named)}")
    assert offenders == []


def test_the_broker_uses_vendors_only_through_the_registry_and_the_contracts() -> None:
    for path in sorted((SRC / "broker").glob("*.py")):
        used = {m for m in imported_modules(path) if m.startswith("slurm_qpu.vendors.")}
        outside = {m for m in used if not m.startswith(SHARED)}
        assert outside == set(), path.name


def test_one_vendor_folder_does_not_reach_into_another() -> None:
    folders = {m.rsplit(".", 1)[1] for m in BUILTIN.values()}
    for folder in sorted(folders):
        for path in sorted((VENDORS / folder).glob("*.py")):
            others = {m for m in imported_modules(path) for f in folders - {folder}
                      if m.startswith(f"slurm_qpu.vendors.{f}")}
            assert others == set(), f"{folder}/{path.name}: {sorted(others)}"


REPO = SRC.parents[1]


def test_the_product_package_imports_neither_the_emulator_nor_the_lab() -> None:
    # they are distributions of their own that a compute node's venv does not hold; the
    # one exception is the deprecated `slurm-qpu emulator` spelling, which runs the
    # emulator where it is installed and says so where it is not
    reaching = {}
    for path in SRC.rglob("*.py"):
        outside = {m for m in imported_modules(path)
                   if m.split(".")[0] in ("slurm_qpu_emulator", "slurm_qpu_lab")}
        if outside:
            reaching[str(path.relative_to(SRC))] = outside
    assert reaching == {"cli/__init__.py": {"slurm_qpu_emulator.cli",
                                            "slurm_qpu_emulator.cli.main"}}


def test_src_holds_only_the_product_and_the_product_build_takes_only_it() -> None:
    import tomllib

    assert sorted(p.name for p in (REPO / "src").iterdir()
                  if p.is_dir() and not p.name.endswith(".egg-info")) == ["slurm_qpu"]
    product = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert product["tool"]["setuptools"]["packages"]["find"]["include"] == [
        "slurm_qpu", "slurm_qpu.*"]
    assert "emulator" not in product["project"]["optional-dependencies"]


def test_the_emulator_and_the_lab_are_versioned_with_the_product() -> None:
    import tomllib

    def project(path: Path) -> dict[str, object]:
        meta: dict[str, object] = tomllib.loads(path.read_text())["project"]
        return meta

    version = project(REPO / "pyproject.toml")["version"]
    for folder, package in (("emulator", "slurm_qpu_emulator"), ("lab", "slurm_qpu_lab")):
        meta = project(REPO / folder / "pyproject.toml")
        assert meta["version"] == version, folder
        assert (REPO / folder / package / "__init__.py").is_file()
        assert "slurm-qpu" in meta["dependencies"]  # type: ignore[operator]
