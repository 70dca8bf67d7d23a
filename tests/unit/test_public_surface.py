"""The public surface is declared: each public module lists what it offers in ``__all__``
(a job's program: ``slurm_qpu.client`` and the environment reader ``slurm_qpu.jobenv``; a
site's vendor: ``slurm_qpu.vendors``; the package itself), everything listed is there,
and everything a module defines without a leading underscore is listed. A new public
name is a decision, made here, not an accident of a module's layout."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

PUBLIC = ["slurm_qpu", "slurm_qpu.client", "slurm_qpu.jobenv", "slurm_qpu.vendors"]
NOT_API = {"TYPE_CHECKING"}  # the import-cost idiom: a module constant, not an offer


@pytest.mark.parametrize("name", PUBLIC)
def test_everything_a_public_module_lists_is_there(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__, name
    for member in module.__all__:
        assert getattr(module, member, None) is not None, f"{name}.{member}"
    assert len(set(module.__all__)) == len(module.__all__)


def defined_names(module: object) -> set[str]:
    """Names a module's own source binds at its top level (definitions and assignments)."""
    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")} - NOT_API


@pytest.mark.parametrize("name", PUBLIC)
def test_everything_a_public_module_defines_is_listed_or_private(name: str) -> None:
    module = importlib.import_module(name)
    unlisted = defined_names(module) - set(module.__all__)
    assert not unlisted, f"{name} defines {sorted(unlisted)} without listing them in " \
                         "__all__: list them, or make them private (a leading underscore)"


def test_a_name_that_is_not_offered_is_an_attribute_error() -> None:
    import slurm_qpu
    import slurm_qpu.vendors

    with pytest.raises(AttributeError):
        slurm_qpu.no_such_name  # noqa: B018
    with pytest.raises(AttributeError):
        slurm_qpu.vendors.no_such_name  # noqa: B018


def test_the_old_site_api_path_still_works_with_a_deprecation_warning() -> None:
    import sys

    sys.modules.pop("slurm_qpu.resources", None)
    with pytest.warns(DeprecationWarning, match="import from slurm_qpu.vendors"):
        import slurm_qpu.resources
    from slurm_qpu.vendors import QuantumResource

    assert slurm_qpu.resources.QuantumResource is QuantumResource


def test_the_example_site_vendor_uses_only_the_declared_site_api() -> None:
    """examples/site-vendor is what the README tells a site to write: it must not need
    anything of slurm-qpu beyond ``slurm_qpu.vendors``'s ``__all__``."""
    import slurm_qpu.vendors

    example = Path(__file__).resolve().parents[2] / "examples" / "site-vendor" / "acme_qpu"
    used: dict[str, set[str]] = {}
    for source in sorted(example.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("slurm_qpu"):
                used.setdefault(str(node.module), set()).update(a.name for a in node.names)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("slurm_qpu") for a in node.names), source
    assert set(used) == {"slurm_qpu.vendors"}, used
    assert used["slurm_qpu.vendors"] <= set(slurm_qpu.vendors.__all__)
