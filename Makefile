# slurm-qpu. The two commands that matter:  make demo   and   make test
# Everything uses the SYSTEM Python (/usr/bin/python3): the plugin is loaded into every
# user's sbatch/srun, so it must not depend on a Python only root can read.

PYTHON        ?= /usr/bin/python3
PYTHON_CONFIG ?= /usr/bin/python3-config
PREFIX        ?= /usr/local
DESTDIR       ?=
LAB           ?= /tmp/slurm-qpu-lab
VENV_DEV      := .venv
PY_DEV        := $(VENV_DEV)/bin/python
PLUGIN_DIR     = $(PREFIX)/lib/slurm
VENV_DIR       = $(PREFIX)/lib/slurm-qpu/venv
PYTEST_ARGS   ?=
# optional parts installed with the plugin (pyproject extras); the lab wants them all.
# `emulator` among them is the emulator's own distribution (emulator/), not an extra.
EXTRAS        ?=
comma         := ,
empty         :=
space         := $(empty) $(empty)
EXTRA_LIST     = $(subst $(comma), ,$(EXTRAS))
PY_EXTRAS      = $(subst $(space),$(comma),$(strip $(filter-out emulator,$(EXTRA_LIST))))
PIP_TARGET     = '.$(if $(PY_EXTRAS),[$(PY_EXTRAS)])' $(if $(filter emulator,$(EXTRA_LIST)),./emulator)

.PHONY: help deps shim install dev lint typecheck test test-unit test-hostile test-slurm test-chroot \
        test-cluster test-package demo lab-up lab-down cluster-up cluster-down bench man deb clean

help:
	@echo "make demo        real Slurm lab + a sbatch --qpu job and its output"
	@echo "make test        every test tier (unit, lint, the hostile-client tier, real Slurm,"
	@echo "                 newer Slurm in a chroot, the docker cluster, the packages)"
	@echo "make shim        build shim/spank_qpu.so and its Python half spank_qpu_python.so"
	@echo "make install     plugin + venv into \$$(DESTDIR)\$$(PREFIX) (default /usr/local);"
	@echo "                 EXTRAS=ibm,pasqal,emulator,qrmi adds job SDKs / the emulator"
	@echo "make deb         Debian packages slurm-qpu, -broker, -emulator in build/packages/ for the"
	@echo "                 Slurm and Python found here (DEB_BUILD_PROFILES=noemulator: without"
	@echo "                 the emulator; docs/install.md)"
	@echo "make rpm         slurm-qpu, -broker, -emulator RPMs (packaging/rpm/) in build/packages/rpm/"
	@echo "make lab-up      start munge, slurmctld and two slurmd with the plugin (writes lab.env)"
	@echo "make lab-down    stop the lab"
	@echo "make demo CLUSTER=docker   the demo on the docker multi-node cluster"
	@echo "make cluster-up  docker cluster: login, controller+slurmdbd, MariaDB, c1 c2 q1,"
	@echo "                 broker, emulator (installs docker.io and starts dockerd if need be)"
	@echo "make cluster-down  remove the cluster's containers (images stay cached)"
	@echo "make bench       measure what the plugin costs jobs, the broker and the proxy;"
	@echo "                 writes BENCHMARKS.md (BENCH_ARGS='--quick' or '--only broker')"
	@echo "make man         manual pages (slurm-qpu.1, slurm-qpu-COMMAND.1, spank_qpu.8) in build/man"

deps:
	@tools/install-deps.sh

shim: deps
	$(MAKE) -C shim PYTHON_CONFIG=$(PYTHON_CONFIG)

# The plugin, and a venv built with the system Python that every job user can read.
install: shim
	install -d -m 0755 $(DESTDIR)$(PLUGIN_DIR) $(DESTDIR)$(PREFIX)/bin \
		$(DESTDIR)$(PREFIX)/share/slurm-qpu
	@# the plugin and its Python half (loaded on first use) go in the same directory
	install -m 0755 shim/spank_qpu.so shim/spank_qpu_python.so $(DESTDIR)$(PLUGIN_DIR)/
	[ -x $(DESTDIR)$(VENV_DIR)/bin/python ] || { $(PYTHON) -m venv $(DESTDIR)$(VENV_DIR) && \
		$(DESTDIR)$(VENV_DIR)/bin/python -m pip install -q --upgrade pip setuptools wheel; }
	$(DESTDIR)$(VENV_DIR)/bin/python -m pip install -q --no-build-isolation $(PIP_TARGET)
	@# a venv's scripts name their interpreter by absolute path: drop DESTDIR from it
	@# (scripts only: sed -i on the bin/python symlinks would turn them into copies)
	[ -z "$(DESTDIR)" ] || for f in $(DESTDIR)$(VENV_DIR)/bin/*; do \
		[ -L "$$f" ] || sed -i "1s|^#!$(DESTDIR)|#!|" "$$f"; done
	ln -sf $(VENV_DIR)/bin/slurm-qpu $(DESTDIR)$(PREFIX)/bin/slurm-qpu
	[ ! -e $(DESTDIR)$(VENV_DIR)/bin/slurm-qpu-emulator ] || \
		ln -sf $(VENV_DIR)/bin/slurm-qpu-emulator $(DESTDIR)$(PREFIX)/bin/slurm-qpu-emulator
	install -m 0644 plugstack.conf.example qrmi_config.example.json \
		$(DESTDIR)$(PREFIX)/share/slurm-qpu/
	chmod -R a+rX $(DESTDIR)$(PREFIX)/lib/slurm-qpu
	@echo "installed $(DESTDIR)$(PLUGIN_DIR)/spank_qpu.so and $(DESTDIR)$(VENV_DIR)"

# Debian packages of this work tree (debian/), built in a copy under build/deb, for the Slurm
# major release and the Python this machine has; the Python venvs come from PyPI.
deb:
	tools/install-deps.sh debhelper dpkg-dev groff-base
	tools/build-deb build/packages

# The RPMs of packaging/rpm/slurm-qpu.spec, from HEAD (git archive) when the work tree is
# clean, else from the work tree's tracked and new files, so `make rpm` builds what you have.
# On Debian (CI) rpmbuild is Debian's, with --nodeps (no Slurm RPMs to satisfy
# BuildRequires) and the system python3; elsewhere the spec's defaults (python3.11).
# packaging/rpm/README.md says what that checks and what needs a real RPM distribution.
RPM_VERSION    = $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
RPM_TOPDIR     = $(CURDIR)/build/rpm
RPM_TARBALL    = $(RPM_TOPDIR)/SOURCES/slurm-qpu-$(RPM_VERSION).tar.gz
RPMBUILD_ARGS ?= $(if $(wildcard /etc/debian_version),--nodeps --define 'python3_bin $(PYTHON)')

.PHONY: rpm
rpm:
	$(if $(wildcard /etc/debian_version),tools/install-deps.sh rpm)
	@command -v rpmbuild >/dev/null || { echo "make rpm: rpmbuild is missing (dnf install rpm-build)" >&2; exit 1; }
	rm -rf $(RPM_TOPDIR) build/packages/rpm
	mkdir -p $(RPM_TOPDIR)/SOURCES build/packages/rpm
	if [ -z "$$(git status --porcelain)" ]; then \
		git archive --format=tar.gz --prefix=slurm-qpu-$(RPM_VERSION)/ -o $(RPM_TARBALL) HEAD; \
	else \
		git ls-files -z -co --exclude-standard | grep -zv -E '^(\.venv|build)/' | \
		tar -czf $(RPM_TARBALL) --null --no-recursion --ignore-failed-read \
			--transform 's,^,slurm-qpu-$(RPM_VERSION)/,S' -T -; \
	fi
	rpmbuild -bb $(RPMBUILD_ARGS) --define "_topdir $(RPM_TOPDIR)" packaging/rpm/slurm-qpu.spec
	find $(RPM_TOPDIR)/RPMS -name '*.rpm' -exec cp {} build/packages/rpm/ \;
	ls -1 build/packages/rpm/*.rpm

$(PY_DEV): pyproject.toml emulator/pyproject.toml lab/pyproject.toml
	@tools/install-deps.sh
	[ -x $(PY_DEV) ] || $(PYTHON) -m venv $(VENV_DEV)
	$(PY_DEV) -m pip install -q -e '.[dev,qrmi]' -e ./emulator -e ./lab
	touch $(PY_DEV)

dev: $(PY_DEV)

lint: $(PY_DEV)
	$(VENV_DEV)/bin/ruff check src emulator lab tests benchmarks tools examples
	$(VENV_DEV)/bin/mypy
	$(VENV_DEV)/bin/mypy benchmarks
	$(VENV_DEV)/bin/mypy examples/site-vendor

test-unit: $(PY_DEV)
	tools/pytest-strict $(PY_DEV) tests/unit tests/emulator tests/broker $(PYTEST_ARGS)

# the broker attacked as a hostile cluster user and network client would (tests/hostile)
test-hostile: $(PY_DEV)
	tools/pytest-strict $(PY_DEV) -m hostile tests/hostile $(PYTEST_ARGS)

test-slurm: $(PY_DEV) shim
	LAB=$(LAB)-test tools/pytest-strict $(PY_DEV) -m slurm --maxfail=5 tests/slurm $(PYTEST_ARGS)

test-chroot: $(PY_DEV)
	tools/install-deps.sh debootstrap
	tools/pytest-strict $(PY_DEV) -m chroot tests/chroot $(PYTEST_ARGS)

# the docker multi-node cluster (docker/): the tutorial's scenarios end to end
test-cluster: $(PY_DEV) shim
	tools/install-deps.sh debootstrap
	tools/pytest-strict $(PY_DEV) -m cluster tests/cluster $(PYTEST_ARGS)

# build the .deb and the RPMs, install the .deb on a fresh Debian container (docs/install.md)
# (the tests install debhelper, debootstrap and rpm themselves, so pytest alone works too)
test-package: $(PY_DEV)
	tools/pytest-strict $(PY_DEV) -m package tests/package $(PYTEST_ARGS)

test: lint test-unit test-hostile test-slurm test-chroot test-cluster test-package

lab-up: $(PY_DEV) shim
	$(PY_DEV) -m slurm_qpu_lab up --lab $(LAB) --source . $(if $(MODE),--mode $(MODE))
	@echo "lab is up: . ./lab.env && sbatch --qpu=sim_a --wrap 'env | grep QRMI'"

lab-down: $(PY_DEV)
	$(PY_DEV) -m slurm_qpu_lab down --lab $(LAB)

# CLUSTER=docker: the same demo on the docker multi-node cluster
demo: $(PY_DEV) shim
ifeq ($(CLUSTER),docker)
	tools/install-deps.sh debootstrap
	$(PY_DEV) -m slurm_qpu_lab demo --cluster docker
else
	$(PY_DEV) -m slurm_qpu_lab demo --lab $(LAB) --source . $(if $(MODE),--mode $(MODE))
endif

cluster-up: $(PY_DEV) shim
	tools/install-deps.sh debootstrap
	$(PY_DEV) -m slurm_qpu_lab cluster-up

# a real Slurm lab (slot 4), the broker and the emulator come up and go; ~15 minutes
bench: $(PY_DEV) shim
	$(PY_DEV) -m benchmarks $(BENCH_ARGS)

cluster-down: $(PY_DEV)
	$(PY_DEV) -m slurm_qpu_lab cluster-down

# manual pages: slurm-qpu(1) and its commands from the argparse parser, spank_qpu(8) by hand
man: $(PY_DEV)
	$(PY_DEV) tools/manpages.py --out build/man && $(PY_DEV) tools/manpages.py --emulator --out build/man
	cp man/spank_qpu.8 build/man/

clean:
	$(MAKE) -C shim clean
	rm -rf build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
