/*
 * args.h -- plugstack.conf arguments that the C side itself needs.
 *
 * Everything else on the plugstack line (config=, state_dir=, log_level=, a bare
 * config path, --env:K=V, ...) is passed through to Python untouched.
 */
#ifndef SPANK_QPU_ARGS_H
#define SPANK_QPU_ARGS_H

#include <limits.h>

struct shim_args {
	char pyhome[PATH_MAX];     /* pyhome=DIR   Python prefix (default: the one we were built with) */
	char venv[PATH_MAX];       /* venv=DIR     virtualenv whose site-packages hold slurm_qpu       */
	char pythonpath[PATH_MAX]; /* pythonpath=DIR[:DIR]  prepended to sys.path (development)        */
	char pytrace[PATH_MAX];    /* pytrace=FILE append one line per Python start-up (benchmarks)    */
	char module[128];          /* module=NAME  handler module (default QPU_HANDLER_MODULE)         */
	char state_dir[PATH_MAX];  /* state_dir=DIR  lease records (shared with Python; %n = node)     */
	int broker;                /* broker=URL given: credentials stay on the broker              */
};

/* Fill *a from plugstack arguments; unknown arguments are ignored here. */
void shim_args_parse(struct shim_args *a, int ac, char **av);

#endif
