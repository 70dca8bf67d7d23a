"""``slurm-qpu leases``: the QPU leases recorded on this node (root): which jobs hold
which QPUs, and the errors of those that failed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from slurm_qpu.shim_contract import DEFAULT_STATE_DIR


def main(args: argparse.Namespace) -> int:
    from slurm_qpu.lease.store import LeaseStore

    leases = LeaseStore(Path(args.state_dir)).all()
    if args.json:
        print(json.dumps([json.loads(lease.to_json()) for lease in leases], indent=1))
        return 0
    print(f"{'JOB':>8}  {'STATE':<9} {'ROLE':<7} QPUS / ERROR")
    for lease in leases:
        role = "owner" if lease.owner else "member"
        detail = lease.error if lease.error else ",".join(lease.names)
        print(f"{lease.job_id:>8}  {lease.state.value:<9} {role:<7} {detail}")
    return 0


def add_parser(sub: Any) -> None:
    leases = sub.add_parser("leases", help="QPU leases recorded on this node (root)")
    leases.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                        help="the plugin's state_dir, with %%n already expanded")
    leases.add_argument("--json", action="store_true", help="the leases as JSON, for scripts")
    leases.set_defaults(func=main)
