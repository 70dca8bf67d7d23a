"""``slurm-qpu usage``: who used which QPU, for how long, from Slurm accounting."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from slurm_qpu.usage import GROUPS, UsageError, from_sacct, render, totals

DESCRIPTION = """\
QPU usage per user, account and QPU over a time window, from the usage records slurm-qpu
writes into each --qpu job's AdminComment in Slurm accounting (sacct). Needs slurmdbd;
users see their own jobs unless they are Slurm operators (PrivateData permitting).

  slurm-qpu usage                          # this month, per user, account and QPU
  slurm-qpu usage --since 2026-10-01 --until 2026-11-01 --by account --format csv
  sacct -j 1234 -o JobID,User,Account,AdminComment%200   # one job's record"""


def _month_start() -> str:
    return datetime.now().strftime("%Y-%m-01")


def _by(value: str) -> list[str]:
    groups = [g.strip() for g in value.split(",") if g.strip()]
    wrong = [g for g in groups if g not in GROUPS]
    if wrong or not groups:
        raise argparse.ArgumentTypeError(
            f"--by takes a comma list of {', '.join(GROUPS)}; got {value!r}")
    return groups


def main(args: argparse.Namespace) -> int:
    try:
        rows = from_sacct(args.since, args.until, users=args.user, accounts=args.account)
    except (UsageError, OSError) as exc:
        print(f"slurm-qpu usage: {exc}", file=sys.stderr)
        return 1
    if args.qpu:
        wanted = set(args.qpu.split(","))
        rows = [r for r in rows if r.qpu in wanted]
    print(render(totals(rows, args.by), args.format), end="")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("usage", help="QPU usage per user, account and QPU (from sacct)",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--since", default=_month_start(),
                   help="start of the window, any sacct time (default: the 1st of this month)")
    p.add_argument("--until", default="now", help="end of the window (default: now)")
    p.add_argument("--by", type=_by, default=list(GROUPS),
                   help="group by a comma list of user,account,qpu (default: all three)")
    p.add_argument("--user", help="only these users (comma list)")
    p.add_argument("--account", help="only these accounts (comma list)")
    p.add_argument("--qpu", help="only these QPUs (comma list)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=main)
