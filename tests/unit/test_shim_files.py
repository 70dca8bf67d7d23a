"""The shim's own file: ``pytrace=FILE``, which root's daemons and every user's sbatch
append to, is never opened through a link planted at its name.

The real Python half (shim/python.c, built with its Makefile into a temporary copy of
shim/) is loaded by a small C program standing in for Slurm: it provides the few Slurm
functions the half calls (slurm_error prints to stderr) and calls ``spank_qpu_py_call``
the way the plugin does, which starts the embedded Python and writes the start-up trace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON_CONFIG = "/usr/bin/python3-config"
TOOLS = (shutil.which("cc") or shutil.which("gcc")) and shutil.which("make") \
    and Path(PYTHON_CONFIG).exists() and Path("/usr/include/slurm/spank.h").exists()
pytestmark = pytest.mark.skipif(not TOOLS and not os.environ.get("CI"),
                                reason="needs a C compiler, make, python3-dev and "
                                       "libslurm-dev (tools/install-deps.sh)")

DRIVER = r"""
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include "python.h"

static void say(const char *level, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: ", level);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}
#define LOGGER(fn, level) void fn(const char *fmt, ...) \
	{ va_list ap; va_start(ap, fmt); say(level, fmt, ap); va_end(ap); }
LOGGER(slurm_error, "error") LOGGER(slurm_info, "info") LOGGER(slurm_verbose, "verbose")
LOGGER(slurm_debug, "debug") LOGGER(slurm_debug2, "debug2")

spank_err_t spank_option_getopt(spank_t sp, struct spank_option *o, char **v)
{ return ESPANK_ERROR; }
spank_err_t spank_get_item(spank_t sp, spank_item_t item, ...) { return ESPANK_ERROR; }
spank_err_t spank_getenv(spank_t sp, const char *n, char *b, int l) { return ESPANK_ERROR; }
spank_err_t spank_setenv(spank_t sp, const char *n, const char *v, int o) { return ESPANK_ERROR; }
spank_err_t spank_unsetenv(spank_t sp, const char *n) { return ESPANK_ERROR; }
spank_err_t spank_job_control_setenv(spank_t sp, const char *n, const char *v, int o)
{ return ESPANK_ERROR; }

static const char *context(void) { return "slurmd"; }
static char *no_value;
static struct spank_option option = { "qpu", "NAMES", "", 1, 0, NULL };

/* driver PYTHON_HALF ARG...: call the handler job_prolog with the plugstack ARGs */
int main(int argc, char **argv)
{
	struct shim_host host = { context, &no_value, &option };
	void *half = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
	python_call_fn call;

	if (!half) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 2;
	}
	call = (python_call_fn)dlsym(half, PYTHON_CALL_SYMBOL);
	printf("rc=%d\n", call(&host, NULL, "job_prolog", argc - 2, argv + 2, NULL, 0));
	return 0;
}
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the driver program, the Python half), built from this work tree's shim/."""
    build = tmp_path_factory.mktemp("shim")
    shutil.copytree(REPO / "shim", build / "shim",
                    ignore=shutil.ignore_patterns("*.so", "*.o"))
    subprocess.run(["make", "-s", "-C", str(build / "shim"), f"PYTHON_CONFIG={PYTHON_CONFIG}",
                    "spank_qpu_python.so"], check=True, capture_output=True)
    source = build / "driver.c"
    source.write_text(DRIVER)
    program = build / "driver"
    subprocess.run(["cc", "-o", str(program), str(source), f"-I{build / 'shim'}", "-rdynamic",
                    "-ldl"], check=True, capture_output=True)
    return program, build / "shim" / "spank_qpu_python.so"


def start_python(driver: tuple[Path, Path], tmp_path: Path,
                 trace: Path) -> subprocess.CompletedProcess[str]:
    """One process that starts the embedded Python with pytrace=TRACE."""
    handlers = tmp_path / "handlers"
    handlers.mkdir(exist_ok=True)
    (handlers / "trace_handlers.py").write_text("def job_prolog(args):\n    return 0\n")
    program, half = driver
    proc = subprocess.run([str(program), str(half), f"pytrace={trace}",
                           "module=trace_handlers", f"pythonpath={handlers}"],
                          capture_output=True, text=True, timeout=30)
    assert proc.stdout == "rc=0\n", proc.stderr
    return proc


def test_a_trace_file_gets_one_line_per_python_start_up(
        driver: tuple[Path, Path], tmp_path: Path) -> None:
    trace = tmp_path / "pytrace.log"
    trace.write_text("")
    start_python(driver, tmp_path, trace)
    start_python(driver, tmp_path, trace)
    lines = trace.read_text().splitlines()
    assert len(lines) == 2 and all(" ctx=slurmd cb=job_prolog ms=" in line for line in lines)


def test_a_symbolic_link_at_the_trace_name_is_not_followed(
        driver: tuple[Path, Path], tmp_path: Path) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("root:*:19000:0:99999:7:::\n")
    trace = tmp_path / "pytrace.log"
    trace.symlink_to(victim)
    proc = start_python(driver, tmp_path, trace)
    assert victim.read_text() == "root:*:19000:0:99999:7:::\n"
    assert f"error: qpu: pytrace={trace}: not writing the start-up trace: it is a symbolic " \
        "link, which is not followed" in proc.stderr.splitlines()


def test_a_hard_link_at_the_trace_name_is_refused(
        driver: tuple[Path, Path], tmp_path: Path) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("root:*:19000:0:99999:7:::\n")
    trace = tmp_path / "pytrace.log"
    os.link(victim, trace)
    proc = start_python(driver, tmp_path, trace)
    assert victim.read_text() == "root:*:19000:0:99999:7:::\n"
    assert f"error: qpu: pytrace={trace}: not writing the start-up trace: not a regular " \
        "file with a single link" in proc.stderr.splitlines()


def test_a_fifo_at_the_trace_name_neither_blocks_nor_is_written(
        driver: tuple[Path, Path], tmp_path: Path) -> None:
    trace = tmp_path / "pytrace.log"
    os.mkfifo(trace)
    # a reader, so that an open without O_NONBLOCK would succeed and write to it
    reader = os.open(trace, os.O_RDONLY | os.O_NONBLOCK)
    try:
        proc = start_python(driver, tmp_path, trace)
        assert os.read(reader, 100) == b""  # nothing written: end of file, no writer left
    finally:
        os.close(reader)
    assert f"error: qpu: pytrace={trace}: not writing the start-up trace: not a regular " \
        "file with a single link" in proc.stderr.splitlines()
