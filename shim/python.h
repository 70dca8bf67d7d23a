/*
 * python.h -- the interface between the plugin (spank_qpu.so) and its Python half
 * (spank_qpu_python.so: the embedded CPython and the built-in `_spank` module).
 *
 * The plugin is loaded into every sbatch, srun, slurmd and slurmstepd of the cluster,
 * --qpu or not, so it does not link libpython: loading libpython costs every Slurm
 * command ~3 ms (BENCHMARKS.md). pyload.c dlopen()s the Python half, from the
 * plugin's own directory, the first time a callback needs Python.
 */
#ifndef SPANK_QPU_PYTHON_H
#define SPANK_QPU_PYTHON_H

#include <slurm/spank.h>

#include "contract.h"

#define PYTHON_HALF QPU_PYTHON_HALF
#define PYTHON_CALL_SYMBOL QPU_PYTHON_CALL_SYMBOL

/*
 * What the Python half needs from the plugin. Slurm loads the plugin RTLD_LOCAL, so
 * its symbols are not visible to a library it loads: they are passed by pointer.
 */
struct shim_host {
	const char *(*context_name)(void);
	char **option_value;               /* the --qpu value seen by this process's option callback */
	struct spank_option *qpu_option;   /* as registered; spank_option_getopt() needs it */
};

/*
 * Call handler `fn` of the Python handler module with (plugstack args list, *extra)
 * and return its integer result (None -> 0). Starts Python on first use in this
 * process. Any failure is logged with slurm_error and returned as -1.
 */
typedef int (*python_call_fn)(const struct shim_host *host, spank_t sp, const char *fn,
			      int ac, char **av, const char *value, int remote);

/* The plugin side (pyload.c): load the Python half if need be, then call it. */
int py_call(spank_t sp, const char *fn, int ac, char **av, const char *value, int remote);

/* The plugin's own state, handed to the Python half in struct shim_host. */
extern char *shim_option_value;
extern struct spank_option shim_qpu_option;
const char *shim_context_name(void);

#endif
