/*
 * python.c -- the Python half (spank_qpu_python.so): embed the system CPython and
 * expose Slurm to it as `_spank`. Loaded by pyload.c only when a callback needs it.
 *
 * Facts found running Slurm 22.05, 24.11 and 26.05 that this file follows:
 *  - Slurm dlopen()s plugins RTLD_LOCAL; libpython must be promoted to
 *    RTLD_GLOBAL or C extensions (pydantic_core) fail with undefined symbols.
 *  - Initialise once per process and never finalise; slurmstepd forks tasks
 *    after we may have started, and the child simply keeps using the
 *    interpreter (no PyOS_AfterFork_Child: nobody called PyOS_BeforeFork).
 *  - Never install signal handlers: this runs inside slurmd/slurmstepd/srun.
 *  - Isolated config: the user's PYTHONPATH/PYTHONHOME must not reach us.
 *  - Take the GIL with PyGILState_Ensure in every call.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "python.h"

#ifndef LIBPYTHON_SONAME
#define LIBPYTHON_SONAME "libpython3.so"
#endif

static spank_t cur_sp;          /* handle of the callback in progress */
static const struct shim_host *host;   /* the plugin's state (python.h) */
static pid_t py_pid;            /* process that started Python (0: not started) */
static int py_broken;           /* start-up failed: do not retry in this process */
static PyObject *py_handlers;   /* the imported handler module */

/* ---------------------------------------------------------------- _spank */

static PyObject *m_context(PyObject *self, PyObject *unused)
{
	return PyUnicode_FromString(host->context_name());
}

static PyObject *m_setenv(PyObject *self, PyObject *args)
{
	const char *name, *value;
	int overwrite = 1;

	if (!PyArg_ParseTuple(args, "ss|p", &name, &value, &overwrite))
		return NULL;
	return PyLong_FromLong(spank_setenv(cur_sp, name, value, overwrite));
}

static PyObject *m_unsetenv(PyObject *self, PyObject *args)
{
	const char *name;

	if (!PyArg_ParseTuple(args, "s", &name))
		return NULL;
	return PyLong_FromLong(spank_unsetenv(cur_sp, name));
}

static PyObject *m_getenv(PyObject *self, PyObject *args)
{
	const char *name;
	char buf[8192];

	if (!PyArg_ParseTuple(args, "s", &name))
		return NULL;
	if (spank_getenv(cur_sp, name, buf, sizeof(buf)) != ESPANK_SUCCESS)
		Py_RETURN_NONE;
	return PyUnicode_FromString(buf);
}

static PyObject *m_job_control_setenv(PyObject *self, PyObject *args)
{
	const char *name, *value;
	int overwrite = 1;

	if (!PyArg_ParseTuple(args, "ss|p", &name, &value, &overwrite))
		return NULL;
	return PyLong_FromLong(spank_job_control_setenv(cur_sp, name, value, overwrite));
}

/* The job's --qpu value as Slurm stored it (works in job_prolog/job_epilog). */
static PyObject *m_getopt(PyObject *self, PyObject *unused)
{
	char *value = NULL;

	if (spank_option_getopt(cur_sp, host->qpu_option, &value) != ESPANK_SUCCESS || !value)
		Py_RETURN_NONE;
	return PyUnicode_FromString(value);
}

static PyObject *m_option_value(PyObject *self, PyObject *unused)
{
	if (!*host->option_value)
		Py_RETURN_NONE;
	return PyUnicode_FromString(*host->option_value);
}

/* Integer job facts from spank_get_item, by name; None when not available here. */
static PyObject *m_item(PyObject *self, PyObject *args)
{
	static const struct { const char *name; spank_item_t item; } items[] = {
		{ "job_id", S_JOB_ID }, { "uid", S_JOB_UID }, { "gid", S_JOB_GID },
		{ "step_id", S_JOB_STEPID }, { "nnodes", S_JOB_NNODES },
		{ "nodeid", S_JOB_NODEID }, { "local_task_count", S_JOB_LOCAL_TASK_COUNT },
		{ "total_task_count", S_JOB_TOTAL_TASK_COUNT },
		{ "task_global_id", S_TASK_GLOBAL_ID }, { "array_id", S_JOB_ARRAY_ID },
		{ "array_task_id", S_JOB_ARRAY_TASK_ID },
		{ "restart_count", S_SLURM_RESTART_COUNT },
	};
	const char *name;

	if (!PyArg_ParseTuple(args, "s", &name))
		return NULL;
	for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
		uint32_t v = 0;   /* every item above is a 32-bit integer */

		if (strcmp(items[i].name, name))
			continue;
		if (!cur_sp || spank_get_item(cur_sp, items[i].item, &v) != ESPANK_SUCCESS)
			Py_RETURN_NONE;
		return PyLong_FromUnsignedLong(v);
	}
	return PyErr_Format(PyExc_KeyError, "unknown spank item %s", name);
}

/* log(level, message): 0 error, 1 info, 2 verbose, 3 debug, 4+ debug2 */
static PyObject *m_log(PyObject *self, PyObject *args)
{
	int level;
	const char *msg;

	if (!PyArg_ParseTuple(args, "is", &level, &msg))
		return NULL;
	switch (level) {
	case 0: slurm_error("qpu: %s", msg); break;
	case 1: slurm_info("qpu: %s", msg); break;
	case 2: slurm_verbose("qpu: %s", msg); break;
	case 3: slurm_debug("qpu: %s", msg); break;
	default: slurm_debug2("qpu: %s", msg); break;
	}
	Py_RETURN_NONE;
}

static PyMethodDef spank_methods[] = {
	{ "context", m_context, METH_NOARGS, "SPANK context: local, remote, allocator, slurmd, job_script" },
	{ "setenv", m_setenv, METH_VARARGS, "setenv(name, value, overwrite=True) -> spank_err_t" },
	{ "unsetenv", m_unsetenv, METH_VARARGS, "unsetenv(name) -> spank_err_t" },
	{ "getenv", m_getenv, METH_VARARGS, "getenv(name) -> str | None (the job's environment)" },
	{ "job_control_setenv", m_job_control_setenv, METH_VARARGS, "job_control_setenv(name, value, overwrite=True)" },
	{ "getopt", m_getopt, METH_NOARGS, "the job's --qpu value via spank_option_getopt, or None" },
	{ "option_value", m_option_value, METH_NOARGS, "the --qpu value seen by this process's option callback" },
	{ "item", m_item, METH_VARARGS, "item(name) -> int | None (job_id, uid, gid, step_id, ...)" },
	{ "log", m_log, METH_VARARGS, "log(level, message) through Slurm's logger" },
	{ NULL, NULL, 0, NULL }
};

static struct PyModuleDef spank_module = {
	PyModuleDef_HEAD_INIT, "_spank", "Slurm SPANK API of the slurm-qpu shim", -1, spank_methods,
	NULL, NULL, NULL, NULL
};

static PyObject *init_spank_module(void)
{
	return PyModule_Create(&spank_module);
}

/* ---------------------------------------------------------------- start-up */

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Format the pending Python exception into Slurm's log (Python's stderr is lost in daemons). */
static void log_exception(const char *where)
{
	PyObject *type, *value, *tb, *text = NULL;

	PyErr_Fetch(&type, &value, &tb);
	PyErr_NormalizeException(&type, &value, &tb);
	if (value)
		text = PyObject_Str(value);
	slurm_error("qpu: python error in %s: %s: %s", where,
		    type ? ((PyTypeObject *)type)->tp_name : "?",
		    text ? PyUnicode_AsUTF8(text) : "?");
	Py_XDECREF(text);
	Py_XDECREF(type);
	Py_XDECREF(value);
	Py_XDECREF(tb);
	PyErr_Clear();
}

/*
 * Open pytrace=FILE for appending. Root's daemons and every user's sbatch write it, so it
 * lives where users can reach, and a plain open() would follow a symbolic link a user
 * put at its name into any file (root appending to /etc/shadow). So: O_NOFOLLOW (a
 * symbolic link is refused), then fstat what was opened and keep it only if it is a
 * regular file with a single link (a hard link is a second name of another file, which
 * O_NOFOLLOW cannot see; its link count shows it). O_NONBLOCK keeps a FIFO planted there
 * from blocking the callback. A missing or unwritable file is skipped silently, as
 * before; a refusal is logged. Never fails the caller. (src/slurm_qpu/safefile.py: the
 * same rule for the Python side's files.)
 */
static int open_trace(const char *path)
{
	struct stat st;
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);

	if (fd < 0) {
		if (errno == ELOOP)
			slurm_error("qpu: pytrace=%s: not writing the start-up trace: "
				    "it is a symbolic link, which is not followed", path);
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
		slurm_error("qpu: pytrace=%s: not writing the start-up trace: "
			    "not a regular file with a single link", path);
		close(fd);
		return -1;
	}
	return fd;
}

static void trace_startup(const struct shim_args *a, const char *callback, double ms)
{
	char line[512];
	int fd, n;

	if (!a->pytrace[0])
		return;
	fd = open_trace(a->pytrace);
	if (fd < 0)
		return;
	n = snprintf(line, sizeof(line), "%ld pid=%d uid=%d ctx=%s cb=%s ms=%.2f\n",
		     (long)time(NULL), (int)getpid(), (int)getuid(),
		     host->context_name(), callback, ms);
	if (write(fd, line, n) < 0) { /* best effort */ }
	close(fd);
}

static int add_to_path(const struct shim_args *a)
{
	PyObject *sys_path = PySys_GetObject("path");   /* borrowed */
	char buf[sizeof(a->pythonpath)], *save = NULL;
	Py_ssize_t pos = 0;

	snprintf(buf, sizeof(buf), "%s", a->pythonpath);
	for (char *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		PyObject *p = PyUnicode_FromString(d);

		if (!p || PyList_Insert(sys_path, pos++, p) < 0)
			return -1;
		Py_DECREF(p);
	}
	if (a->venv[0]) {
		char site[PATH_MAX + 64];
		PyObject *mod, *r;

		snprintf(site, sizeof(site), "%s/lib/python%d.%d/site-packages",
			 a->venv, PY_MAJOR_VERSION, PY_MINOR_VERSION);
		if (!(mod = PyImport_ImportModule("site")))
			return -1;
		r = PyObject_CallMethod(mod, "addsitedir", "s", site);
		Py_DECREF(mod);
		if (!r)
			return -1;
		Py_DECREF(r);
	}
	return 0;
}

static int start_python(int ac, char **av, const char *callback)
{
	struct shim_args a;
	PyConfig cfg;
	PyStatus st;
	double t0 = now_ms();

	if (py_broken)
		return -1;
	if (py_pid == getpid())
		return 0;
	if (py_pid) {   /* forked child of a process that started Python: keep using it */
		py_pid = getpid();
		return 0;
	}
	shim_args_parse(&a, ac, av);

	if (!dlopen(LIBPYTHON_SONAME, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD))
		slurm_error("qpu: cannot promote %s to RTLD_GLOBAL: %s", LIBPYTHON_SONAME, dlerror());

	PyImport_AppendInittab("_spank", init_spank_module);
	PyConfig_InitIsolatedConfig(&cfg);
	cfg.install_signal_handlers = 0;
	cfg.parse_argv = 0;
	cfg.user_site_directory = 0;
	cfg.write_bytecode = 0;   /* users cannot write the venv anyway */
	st = PyConfig_SetBytesString(&cfg, &cfg.home, a.pyhome);
	if (!PyStatus_Exception(st))
		st = Py_InitializeFromConfig(&cfg);
	PyConfig_Clear(&cfg);
	if (PyStatus_Exception(st)) {
		slurm_error("qpu: cannot start Python (home %s): %s", a.pyhome,
			    st.err_msg ? st.err_msg : "unknown error");
		py_broken = 1;
		return -1;
	}
	py_pid = getpid();
	if (add_to_path(&a) < 0 || !(py_handlers = PyImport_ImportModule(a.module))) {
		log_exception("start-up (is venv= or pythonpath= right in plugstack.conf?)");
		py_broken = 1;
	}
	trace_startup(&a, callback, now_ms() - t0);
	slurm_debug("qpu: python %s started in pid %d (%s, %s) in %.1f ms", Py_GetVersion(),
		    (int)getpid(), host->context_name(), callback, now_ms() - t0);
	PyEval_SaveThread();
	return py_broken ? -1 : 0;
}

/* ---------------------------------------------------------------- calls */

static PyObject *args_list(int ac, char **av)
{
	PyObject *list = PyList_New(0);

	for (int i = 0; list && i < ac; i++) {
		PyObject *s = PyUnicode_DecodeFSDefault(av[i]);

		if (!s || PyList_Append(list, s) < 0) {
			Py_XDECREF(s);
			Py_CLEAR(list);
			break;
		}
		Py_DECREF(s);
	}
	return list;
}

__attribute__((visibility("default")))
int spank_qpu_py_call(const struct shim_host *plugin, spank_t sp, const char *fn, int ac,
		      char **av, const char *value, int remote)
{
	PyGILState_STATE gil;
	PyObject *args, *r = NULL;
	int rc = 0;

	host = plugin;
	if (start_python(ac, av, fn) < 0)
		return -1;
	gil = PyGILState_Ensure();
	cur_sp = sp;
	args = args_list(ac, av);
	if (args) {
		if (value)
			r = PyObject_CallMethod(py_handlers, fn, "Osi", args, value, remote);
		else
			r = PyObject_CallMethod(py_handlers, fn, "O", args);
	}
	if (!r) {
		log_exception(fn);
		rc = -1;
	} else if (r != Py_None) {
		rc = (int)PyLong_AsLong(r);
		if (PyErr_Occurred()) {
			log_exception(fn);
			rc = -1;
		}
	}
	Py_XDECREF(r);
	Py_XDECREF(args);
	cur_sp = NULL;
	PyGILState_Release(gil);
	return rc;
}
