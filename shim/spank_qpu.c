/*
 * spank_qpu.c -- the slurm-qpu SPANK plugin: registers --qpu and forwards the
 * callbacks that need it to the Python package slurm_qpu (module
 * slurm_qpu.spank). No policy lives here; this file only decides
 *   1. whether a callback needs Python at all: a job that did not ask for
 *      --qpu never starts Python in any process, and
 *   2. what Slurm sees as the result, because Slurm's reaction to a failure
 *      depends on the callback (seen on Slurm 22.05 to 26.05):
 *        option (sbatch/salloc/srun)  non-zero rejects the submission: wanted
 *        job_prolog / job_epilog      < 0 DRAINS THE NODE: never fail, Python
 *                                     records the problem for task_init
 *        init_post_opt (remote)       failure leaves the job pending on a
 *                                     drained node: never fail
 *        task_init                    non-zero fails the job, node stays up:
 *                                     the one place a job is failed
 *
 * plugstack.conf:
 *   required /usr/lib/slurm/spank_qpu.so config=/etc/slurm/qrmi_config.json venv=/opt/slurm-qpu/venv
 * (see plugstack.conf.example for every argument)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <slurm/spank.h>

#include "args.h"
#include "contract.h"
#include "python.h"

SPANK_PLUGIN(qpu, 1);

/*
 * Slurm exports a job's --qpu value to its prolog/epilog as QPU_PROLOG_OPTION_ENV and to
 * its tasks as QPU_JOB_OPTION_ENV (an srun inside the job reads it back): contract.h.
 */

char *shim_option_value;
static int step_has_lease;   /* remote: the prolog left a lease record for this job here */
static int option_inherited; /* srun in a job: --qpu is the job's own, leased already */
static int init_ac;
static char **init_av;

static int option_cb(int val, const char *optarg, int remote);

struct spank_option shim_qpu_option = {
	QPU_OPTION_NAME, "NAME[,NAME...]",
	"Quantum processor(s) to acquire for this job, by name, comma separated "
	"(list: slurm-qpu list).",
	1, 0, option_cb
};

const char *shim_context_name(void)
{
	switch (spank_context()) {
	case S_CTX_LOCAL: return "local";
	case S_CTX_REMOTE: return "remote";
	case S_CTX_ALLOCATOR: return "allocator";
	case S_CTX_SLURMD: return "slurmd";
	case S_CTX_JOB_SCRIPT: return "job_script";
	default: return "unknown";
	}
}

/* Did this job ask for --qpu? Answerable in every context without Python. */
static int job_wants_qpu(spank_t sp)
{
	char *value = NULL;

	if (shim_option_value)
		return 1;
	if (spank_option_getopt(sp, &shim_qpu_option, &value) == ESPANK_SUCCESS && value)
		return 1;
	return getenv(QPU_PROLOG_OPTION_ENV) != NULL;
}

/*
 * Did this node's prolog record a lease for the job? A step can lack the --qpu option
 * although its job has one (the steps of a heterogeneous job's other components are
 * launched by an srun that never saw it), so remote callbacks also look on disk: a
 * stat(2), no Python. QPU_NODE_PLACEHOLDER in state_dir is the short host name, here and in Python
 * (slurmstepd knows no node name a plugin can read before the tasks' environment exists).
 */
static int lease_on_disk(spank_t sp, int ac, char **av)
{
	struct shim_args a;
	char host[256] = "", dir[PATH_MAX], path[PATH_MAX + 64];
	uint32_t job_id = 0;
	struct stat st;
	char *pct;

	if (spank_get_item(sp, S_JOB_ID, &job_id) != ESPANK_SUCCESS || !job_id)
		return 0;
	if (gethostname(host, sizeof(host) - 1) < 0)
		return 0;
	host[strcspn(host, ".")] = '\0';
	shim_args_parse(&a, ac, av);
	pct = strstr(a.state_dir, QPU_NODE_PLACEHOLDER);
	if (pct)
		snprintf(dir, sizeof(dir), "%.*s%s%s", (int)(pct - a.state_dir), a.state_dir,
			 host, pct + strlen(QPU_NODE_PLACEHOLDER));
	else
		snprintf(dir, sizeof(dir), "%s", a.state_dir);
	snprintf(path, sizeof(path), "%s/" QPU_LEASE_DIR "/%u" QPU_LEASE_SUFFIX, dir, job_id);
	return stat(path, &st) == 0;
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	/* The option callback gets no argv: keep the plugstack arguments. */
	init_ac = ac;
	init_av = av;
	if (spank_context() == S_CTX_SLURMD) {
		struct shim_args a;

		shim_args_parse(&a, ac, av);
		if (!a.broker)
			slurm_info("qpu: warning: direct mode (no broker= in plugstack.conf): the "
				   "QPU credentials in the config reach the environment of every "
				   "task of a --qpu job; run slurm-qpu broker for production");
	}
	if (spank_context() != S_CTX_SLURMD &&
	    spank_option_register(sp, &shim_qpu_option) != ESPANK_SUCCESS)
		slurm_error("qpu: cannot register --qpu");
	return 0;
}

static int option_cb(int val, const char *optarg, int remote)
{
	free(shim_option_value);
	shim_option_value = strdup(optarg ? optarg : "");
	/* Remote (slurmstepd): the prolog validated the names already. */
	if (remote)
		return 0;
	/*
	 * srun inside a --qpu job gets the job's --qpu back from the environment: the
	 * names were checked at submission and the prolog holds the lease. Checking them
	 * again would start Python in every srun of the job for nothing.
	 */
	if (spank_context() == S_CTX_LOCAL && getenv("SLURM_JOB_ID")) {
		const char *job_value = getenv(QPU_JOB_OPTION_ENV);

		option_inherited = job_value && !strcmp(job_value, shim_option_value);
		if (option_inherited)
			return 0;
	}
	/* sbatch/salloc/srun: validate the names now, before anything is queued. */
	return py_call(NULL, "option", init_ac, init_av, shim_option_value, remote) ? -1 : 0;
}

int slurm_spank_job_prolog(spank_t sp, int ac, char **av)
{
	if (job_wants_qpu(sp) && py_call(sp, "job_prolog", ac, av, NULL, 0))
		slurm_error("qpu: job_prolog failed; the job will fail in task_init, the node stays up");
	return 0;
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
	/*
	 * sbatch/salloc/srun with --qpu: pass the user's allow-listed settings (session
	 * mode, ...) to the prolog through the job-control environment. Python is already
	 * running in this process (the option callback checked the names).
	 */
	if (!spank_remote(sp)) {
		if (shim_option_value && !option_inherited &&
		    spank_context() != S_CTX_JOB_SCRIPT &&
		    py_call(sp, "submit_env", ac, av, NULL, 0))
			slurm_error("qpu: cannot pass QPU settings to the job; it uses the site's");
		return 0;
	}
	step_has_lease = shim_option_value || lease_on_disk(sp, ac, av);
	if (step_has_lease && py_call(sp, "init_post_opt", ac, av, NULL, 1))
		slurm_error("qpu: init_post_opt failed; the job will fail in task_init");
	return 0;
}

int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
	if (!step_has_lease)
		return 0;
	return py_call(sp, "task_init", ac, av, NULL, 1) ? -1 : 0;
}

int slurm_spank_job_epilog(spank_t sp, int ac, char **av)
{
	if (job_wants_qpu(sp) && py_call(sp, "job_epilog", ac, av, NULL, 0))
		slurm_error("qpu: job_epilog failed; the node stays up (see the lines above)");
	return 0;
}
