"""The docker cluster tier: the tutorial's scenarios on a cluster shaped like a real site
(login node, controller with slurmdbd + MariaDB, compute nodes c1 c2 q1, broker, emulator).

One cluster serves the whole tier (started once, removed at the end; set
SLURM_QPU_CLUSTER_KEEP=1 to keep it for a look). A failing test prints the tail of every
daemon log of every node, and the job's output where there is one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from slurm_qpu_emulator.admin import EmulatorAdmin
from slurm_qpu_lab.docker_cluster import EMULATOR_PORT, DockerCluster

_cluster: DockerCluster | None = None
_set_up = ""  # the cluster's set-up times, for the summary


@pytest.fixture(scope="session")
def cluster() -> Iterator[DockerCluster]:
    global _cluster, _set_up
    if os.geteuid() != 0:
        pytest.fail("the cluster tier needs root (dockerd, debootstrap)")
    c = DockerCluster()
    c.up()
    _set_up = c.timings_text()
    _cluster = c
    yield c
    _cluster = None
    if not os.environ.get("SLURM_QPU_CLUSTER_KEEP"):
        c.down(quiet=True)


@pytest.fixture
def admin(cluster: DockerCluster) -> Iterator[EmulatorAdmin]:
    """The vendor's side; every test leaves the emulator as it found it."""
    admin = EmulatorAdmin(cluster.url("emulator", EMULATOR_PORT, ""))
    yield admin
    admin.clear_faults()
    admin.job_seconds(1.0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and _cluster is not None and "cluster" in item.fixturenames:
        try:
            report.sections.append(("cluster logs", _cluster.collect_logs()))
        except Exception as exc:  # the logs must never hide the failure itself
            report.sections.append(("cluster logs", f"could not collect them: {exc}"))



def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.timeout(900))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How long the cluster took to come up (cold: base image and wheels built; warm: all
    cached), in every run's summary."""
    if _set_up:
        terminalreporter.write_line(f"cluster set-up: {_set_up}")
