/*
 * args.c -- parse the plugstack.conf arguments the shim consumes itself.
 */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "contract.h"

#ifndef PYHOME_DEFAULT
#define PYHOME_DEFAULT "/usr"
#endif

static int take(const char *arg, const char *key, char *dst, size_t len)
{
	size_t n = strlen(key);

	if (strncmp(arg, key, n) != 0 || arg[n] != '=')
		return 0;
	snprintf(dst, len, "%s", arg + n + 1);
	return 1;
}

void shim_args_parse(struct shim_args *a, int ac, char **av)
{
	memset(a, 0, sizeof(*a));
	snprintf(a->pyhome, sizeof(a->pyhome), "%s", PYHOME_DEFAULT);
	snprintf(a->module, sizeof(a->module), "%s", QPU_HANDLER_MODULE);
	snprintf(a->state_dir, sizeof(a->state_dir), "%s", QPU_DEFAULT_STATE_DIR);

	for (int i = 0; i < ac; i++) {
		if (take(av[i], "pyhome", a->pyhome, sizeof(a->pyhome)) ||
		    take(av[i], "venv", a->venv, sizeof(a->venv)) ||
		    take(av[i], "pythonpath", a->pythonpath, sizeof(a->pythonpath)) ||
		    take(av[i], "pytrace", a->pytrace, sizeof(a->pytrace)))
			continue;
		if (take(av[i], "state_dir", a->state_dir, sizeof(a->state_dir)))
			continue;
		if (strncmp(av[i], "broker=", 7) == 0 && av[i][7]) {
			a->broker = 1;
			continue;
		}
		take(av[i], "module", a->module, sizeof(a->module));
	}
}
