"""``slurm-qpu slurm-conf``: the Slurm lines a qrmi_config.json implies (Licenses,
GresTypes, gres.conf, AccountingStorageTRES, JobSubmitPlugins), or the job_submit.lua that
gives every --qpu job its QPU's license and enforces the QPUs' policy."""

from __future__ import annotations

import argparse
from typing import Any

from slurm_qpu.cli.config import load_or_report
from slurm_qpu.settings import DEFAULT_CONFIG


def main(args: argparse.Namespace) -> int:
    from slurm_qpu.slurm.conf import render, render_job_submit

    config = load_or_report(args.file)
    if config is None:
        return 1
    if args.job_submit or args.job_submit_functions:
        print(render_job_submit(config, args.file, functions_only=args.job_submit_functions),
              end="")
    else:
        print(render(config, args.nodes), end="")
    return 0


def add_parser(sub: Any) -> None:
    conf = sub.add_parser("slurm-conf", help="the Slurm lines (Licenses, GresTypes, gres.conf) "
                                             "a qrmi_config.json implies (admins)")
    conf.add_argument("file", nargs="?", default=DEFAULT_CONFIG)
    conf.add_argument("--nodes", default="NODES_BESIDE_THE_QPUS",
                      help="node list for the GRES lines, e.g. q[1-2]")
    what = conf.add_mutually_exclusive_group()
    what.add_argument("--job-submit", action="store_true",
                      help="print a job_submit.lua instead: --qpu brings the QPU's license "
                           "and its partition/account/QOS policy is enforced at submit")
    what.add_argument("--job-submit-functions", action="store_true",
                      help="like --job-submit, without slurm_job_submit/slurm_job_modify: "
                           "for sites that call slurm_qpu_submit/slurm_qpu_modify from "
                           "their own job_submit.lua")
    conf.set_defaults(func=main)
