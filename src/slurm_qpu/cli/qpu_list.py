"""``slurm-qpu list``: the QPU names a user can request with --qpu (the public list, or
the config where it is readable)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from slurm_qpu.settings import CATALOG_NAME, DEFAULT_CONFIG


def main(args: argparse.Namespace) -> int:
    from slurm_qpu.request.catalog import CatalogError, read_catalog

    catalog_path = Path(args.names) if args.names else Path(args.config).with_name(CATALOG_NAME)
    try:
        catalog = read_catalog(Path(args.config), catalog_path)
    except CatalogError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([{"name": n, "type": t} for n, t in catalog.types.items()]))
        return 0
    width = max([len(n) for n in catalog.names] + [4])
    print(f"{'NAME':<{width}}  TYPE")
    for name, type_name in catalog.types.items():
        print(f"{name:<{width}}  {type_name}")
    return 0


def add_parser(sub: Any) -> None:
    lst = sub.add_parser("list", help="the QPU names you can request with --qpu")
    lst.add_argument("--config", default=DEFAULT_CONFIG)
    lst.add_argument("--names", help=f"public name list (default: {CATALOG_NAME} beside config)")
    lst.add_argument("--json", action="store_true", help="the list as JSON, for scripts")
    lst.set_defaults(func=main)
