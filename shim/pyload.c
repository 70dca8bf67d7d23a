/*
 * pyload.c -- load the Python half of the plugin the first time a callback needs it.
 *
 * A job without --qpu never gets here: its sbatch, srun, prolog, steps and epilog load
 * neither Python nor libpython (see python.h for why that matters).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "python.h"

static const struct shim_host host = {
	shim_context_name, &shim_option_value, &shim_qpu_option,
};

/* <the directory spank_qpu.so was loaded from>/spank_qpu_python.so */
static int python_half_path(char *path, size_t len)
{
	Dl_info info;
	const char *slash;

	if (!dladdr((void *)py_call, &info) || !info.dli_fname)
		return -1;
	slash = strrchr(info.dli_fname, '/');
	if (!slash)
		return snprintf(path, len, "%s", PYTHON_HALF) >= (int)len ? -1 : 0;
	return snprintf(path, len, "%.*s/%s", (int)(slash - info.dli_fname), info.dli_fname,
			PYTHON_HALF) >= (int)len ? -1 : 0;
}

int py_call(spank_t sp, const char *fn, int ac, char **av, const char *value, int remote)
{
	static python_call_fn call;
	static int failed;   /* once per process: do not retry (and log) in every callback */
	char path[PATH_MAX];
	void *lib;

	if (!call && !failed) {
		failed = 1;
		if (python_half_path(path, sizeof(path)) < 0)
			slurm_error("qpu: cannot locate %s beside spank_qpu.so", PYTHON_HALF);
		else if (!(lib = dlopen(path, RTLD_NOW | RTLD_LOCAL)))
			slurm_error("qpu: cannot load %s (install it beside spank_qpu.so): %s",
				    path, dlerror());
		else if (!(call = (python_call_fn)dlsym(lib, PYTHON_CALL_SYMBOL)))
			slurm_error("qpu: %s has no %s: %s", path, PYTHON_CALL_SYMBOL, dlerror());
		else
			failed = 0;
	}
	return call ? call(&host, sp, fn, ac, av, value, remote) : -1;
}
