"""python -m benchmarks.profiled OUT slurm-qpu-arguments...

Runs ``slurm-qpu`` (the broker) with a CPU-time cProfile of every request thread, merged and
written to OUT (pstats format) when the process exits. ``python -m cProfile`` would
profile the main thread only, which in the broker just waits for SIGTERM: the requests
are served by ThreadingHTTPServer's threads, one per connection."""

from __future__ import annotations

import atexit
import cProfile
import pstats
import socketserver
import sys
import threading
import time
from typing import Any


def main(argv: list[str]) -> int:
    out, args = argv[0], argv[1:]
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original = socketserver.ThreadingMixIn.process_request_thread

    def profiled(self: Any, request: Any, client_address: Any) -> None:
        # CPU time of this thread, not wall time: a request thread mostly waits (for the
        # client's next request, for the vendor), and waiting is not what to optimise
        profile = cProfile.Profile(time.thread_time)
        profile.enable()
        try:
            original(self, request, client_address)
        finally:
            profile.disable()
            with lock:
                profiles.append(profile)

    socketserver.ThreadingMixIn.process_request_thread = profiled  # type: ignore[method-assign]

    def dump() -> None:
        with lock:
            if profiles:
                pstats.Stats(*profiles).dump_stats(out)

    atexit.register(dump)
    from slurm_qpu.cli import main as cli_main

    return cli_main(args)


def profile_tables(path: str, own_rows: int, pattern: str,
                   cumulative_rows: int) -> tuple[float, list[str], list[str]]:
    """(CPU seconds, the top functions by own time, the top ones matching ``pattern`` by
    cumulative time) of a profile this wrapper wrote, with paths shortened."""
    import io

    text = io.StringIO()
    stats = pstats.Stats(path, stream=text)
    cpu = float(getattr(stats, "total_tt", 0.0))  # set by pstats, missing from its stubs
    stats.sort_stats("tottime").print_stats(own_rows)
    own = _table(text.getvalue())
    text.seek(0)
    text.truncate()
    stats.sort_stats("cumulative").print_stats(pattern, cumulative_rows)
    return cpu, own, _table(text.getvalue())


def _table(printed: str) -> list[str]:
    from pathlib import Path

    lines = printed.splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    root = str(Path(__file__).resolve().parents[1])
    return [line.replace(root + "/src/", "").replace(root + "/", "")
            .replace(str(Path(sys.prefix)) + "/", "").replace("/usr/lib/python3.11/", "")
            for line in lines[start:] if line.strip()]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
