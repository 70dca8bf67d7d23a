/*
 * python.h -- the embedded CPython interpreter and the built-in `_spank` module.
 */
#ifndef SPANK_QPU_PYTHON_H
#define SPANK_QPU_PYTHON_H

#include <slurm/spank.h>

#include "args.h"

/*
 * Call handler `fn` of the Python handler module with (plugstack args list,
 * *extra) and return its integer result (None -> 0). Starts Python on first use
 * in this process. Any Python failure is logged with slurm_error and returned
 * as -1. `callback` names the SPANK callback (for logs and the start-up trace).
 */
int py_call(spank_t sp, const char *fn, int ac, char **av,
	    const char *value, int remote);

/* The --qpu value seen by the option callback in this process (or NULL). */
extern char *shim_option_value;

/* The option as registered; spank_option_getopt() needs the same struct. */
extern struct spank_option shim_qpu_option;

const char *shim_context_name(void);

#endif
