"""python -m benchmarks [--quick] [--only KEY[,KEY]] [--out BENCHMARKS.md]

Runs the benchmark sections of issue 8 one after the other (never two at once: they
share two cores) and writes BENCHMARKS.md."""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.options import Options
from benchmarks.report import Section, render

# key -> module; each module has run(Options) -> list[Section]
SECTIONS = {
    "slurm": "benchmarks.slurm_jobs",  # 1, 2 and 6 (task RSS): a real Slurm lab
    "broker": "benchmarks.broker",  # 3 and 6 (broker RSS)
    "proxy": "benchmarks.proxy",  # 4
    "reference": "benchmarks.reference",  # 5
    "ha": "benchmarks.ha",  # 7: one broker on SQLite against two on MariaDB (issue 19)
    "servers": "benchmarks.http_servers",  # 8: the broker's HTTP server against others
}
ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="few repetitions: checks that everything runs; rough numbers")
    ap.add_argument("--only", default="",
                    help="comma-separated sections to run: " + ", ".join(SECTIONS))
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md",
                    help="where to write the report (default: %(default)s)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="scratch directory (default: a fresh temporary one)")
    args = ap.parse_args(argv)
    keys = [k for k in args.only.split(",") if k] or list(SECTIONS)
    unknown = [k for k in keys if k not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")

    started = time.strftime("%Y-%m-%d %H:%M %Z")
    t0 = time.monotonic()
    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="slurm-qpu-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        for key in keys:
            opts = Options(quick=args.quick, workdir=workdir / key, source=ROOT)
            opts.workdir.mkdir(parents=True, exist_ok=True)
            print(f"== {key}", flush=True)
            module = importlib.import_module(SECTIONS[key])
            got: list[Section] = module.run(opts)
            for s in got:
                print(s.markdown(), flush=True)
            sections += got
    summary = [f"- {s.title}: " + ("; ".join(
        f"{r.what} {r.verdict}" for r in s.rows if r.met is not None) or "no target")
        for s in sections]
    command = "make bench" + (" BENCH_ARGS='" + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:])) + "'"
        if (argv if argv is not None else sys.argv[1:]) else "")
    args.out.write_text(render(sections, started=started, seconds=time.monotonic() - t0,
                               command=command, summary=summary,
                               modules=tuple(SECTIONS)))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
