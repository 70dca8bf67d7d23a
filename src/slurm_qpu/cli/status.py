"""``slurm-qpu status``: the QPUs, like sinfo (their vendor status, queue, the jobs holding
them, the last error), from the broker."""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from typing import Any

from slurm_qpu.slurm.conf import license_name

PLUGSTACK = "/etc/slurm/plugstack.conf"
LICENSE_PREFIX = license_name("")


def broker_url(plugstack: str = PLUGSTACK) -> str | None:
    """The broker= of the slurm-qpu line in plugstack.conf (or its plugstack.conf.d)."""
    if os.environ.get("SLURM_QPU_BROKER"):
        return os.environ["SLURM_QPU_BROKER"]
    return plugstack_value("broker", plugstack)


def plugstack_value(key: str, plugstack: str = PLUGSTACK) -> str | None:
    """``key``= of the slurm-qpu line in plugstack.conf (or its plugstack.conf.d)."""
    files = [plugstack, *sorted(glob.glob(os.path.join(os.path.dirname(plugstack),
                                                       "plugstack.conf.d", "*.conf")))]
    for path in files:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split("#", 1)[0].split()
            if len(words) >= 2 and "spank_qpu" in words[1]:
                for word in words[2:]:
                    if word.startswith(f"{key}="):
                        return word.split("=", 1)[1]
    return None


def aligned(table: list[list[str]]) -> str:
    """Columns padded to their widest cell; the last one (free text) runs on."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    return "\n".join(("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False))
                      + "  " + row[-1]).rstrip() for row in table) + "\n"


def _ago(ts: float | None) -> str:
    if ts is None:
        return "-"
    seconds = max(0, int(time.time() - ts))
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"


def render_status(rows: list[dict[str, Any]]) -> str:
    table = [["QPU", "TYPE", "STATUS", "QUEUE", "JOBS", "CHECKED", "NOTE"]]
    for r in rows:
        state = str(r.get("state") or "unchecked") + (" (held)" if r.get("held") else "")
        note = r.get("reason") or ""
        if r.get("last_error"):
            note = (note + "; " if note else "") + \
                f"last error {_ago(r.get('last_error_at'))}: {r['last_error']}"
        jobs = ",".join(map(str, r.get("jobs") or [])) or "-"
        depth = r.get("queue_depth")
        table.append([str(r["name"]), str(r["type"]), state,
                      "-" if depth is None else str(depth), jobs, _ago(r.get("checked_at")),
                      note])
    return aligned(table)


def main(args: argparse.Namespace) -> int:
    from slurm_qpu.broker.client import BrokerClient, BrokerError

    url = args.broker or broker_url()
    if not url:
        print("slurm-qpu status: no broker: give --broker URL (or set broker= on the "
              f"slurm-qpu line of {PLUGSTACK}); in direct mode the QPUs' status needs the "
              "credentials only the broker holds", file=sys.stderr)
        return 1
    try:
        rows = BrokerClient(url, deadline=10, ca_file=args.broker_ca or plugstack_value(
            "broker_ca")).call("GET", "/v1/status")
    except BrokerError as exc:
        print(f"slurm-qpu status: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else render_status(rows), end="\n"
          if args.json else "")
    return 0


def add_parser(sub: Any) -> None:
    st = sub.add_parser("status", help="the QPUs: vendor status, queue, jobs holding them, "
                                       "last error (asks the broker, with your MUNGE "
                                       "credential)")
    st.add_argument("--broker", metavar="URL[,URL...]",
                    help="the broker, or several tried in turn (default: broker= of the "
                         "slurm-qpu line in plugstack.conf)")
    st.add_argument("--broker-ca", metavar="PATH",
                    help="an https broker: the CA bundle that verifies it (default: "
                         "broker_ca= of the slurm-qpu line, else the system's)")
    st.add_argument("--json", action="store_true",
                    help="the same as JSON, for scripts and monitoring")
    st.set_defaults(func=main)
