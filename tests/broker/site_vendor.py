"""The example site vendor (examples/site-vendor: the Acme Quantum package the README walks
through), installed the way pip leaves a package: its import package beside a
``<name>-<version>.dist-info`` holding METADATA, its entry points (from its pyproject.toml)
and RECORD. Written here rather than by pip because building a wheel needs ``wheel``,
which a fresh venv may lack and the test machine cannot download."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site-vendor"
TOKEN = "acme-site-token"  # the API token its stand-in cloud accepts


def install(site: Path) -> list[Path]:
    """Install the example into ``site`` (a directory on sys.path); returns what it wrote."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    package = site / "acme_qpu"
    shutil.copytree(EXAMPLE / "acme_qpu", package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    groups = project["entry-points"]
    (dist / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) + "\n"
        for group, points in groups.items()))
    files = sorted(p for p in [*package.rglob("*"), *dist.iterdir()] if p.is_file())
    (dist / "RECORD").write_text("".join(f"{p.relative_to(site)},,\n" for p in files)
                                 + f"{dist.name}/RECORD,,\n")
    return [package, dist]


def uninstall(written: list[Path]) -> None:
    for path in written:
        shutil.rmtree(path, ignore_errors=True)
