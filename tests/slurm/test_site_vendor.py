"""A site's own vendor on the real-Slurm lab in broker mode: the README's example package
(examples/site-vendor, Acme Quantum) installed into the lab's venv with its entry point,
its QPU in the broker's config, and an `sbatch --qpu=` job whose program runs on it through
the broker's proxy, holding only a job token."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_RESOURCES, LabFixture
from test_broker import journal, lease_env
from test_vendor_jobs import marker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "broker"))
import site_vendor

QPU = "acme_1"

PROGRAM = f"""
python3 - <<'PY'
import json
from slurm_qpu import client
from slurm_qpu.vendors import QiskitPrimitive

qpu = client.resource("{QPU}")
task = qpu.task_start(QiskitPrimitive(json.dumps({{"shots": 8}}), "sampler"))
print("RESULT " + qpu.task_result(task).value, flush=True)
PY
"""


@pytest.fixture(scope="module")
def acme(lab: LabFixture) -> Iterator[Any]:
    """The example installed in the lab's venv, its stand-in cloud on the host, its QPU in
    the config, and the lab in broker mode; all undone afterwards."""
    [site] = (lab.venv_bin.parent / "lib").glob("python3*/site-packages")
    written = site_vendor.install(site)
    sys.path.insert(0, str(site_vendor.EXAMPLE))
    try:
        from acme_qpu.cloud import AcmeCloud

        cloud = AcmeCloud(("127.0.0.1", 0), site_vendor.TOKEN)
        threading.Thread(target=cloud.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True).start()
        resource = {"name": QPU, "type": "acme-qpu", "environment": {
            "QRMI_ACME_ENDPOINT": f"http://127.0.0.1:{cloud.server_address[1]}",
            "QRMI_ACME_TOKEN": site_vendor.TOKEN}}
        lab.write_qrmi_config(extra=[*TEST_RESOURCES, resource])
        lab.use_broker(True)
        try:
            yield cloud
        finally:
            lab.use_broker(False)
            cloud.shutdown()
            cloud.server_close()
    finally:
        sys.path.remove(str(site_vendor.EXAMPLE))
        site_vendor.uninstall(written)
        lab.write_qrmi_config(extra=TEST_RESOURCES)


def test_a_site_vendors_job_runs_through_the_broker_with_only_a_job_token(
        lab: LabFixture, acme: Any) -> None:
    run = lab.run_job(f"--qpu={QPU}", script=PROGRAM, timeout=180)
    assert run.state == "COMPLETED", run.output
    assert json.loads(marker(run.output, "RESULT")) == {"counts": {"00": 4, "11": 4}}
    env = lease_env(lab, run.job_id)
    assert env[f"{QPU}_QRMI_ACME_ENDPOINT"] == f"{lab.broker_url}/p/{QPU}"
    assert env[f"{QPU}_QRMI_ACME_TOKEN"].startswith(f"sqpu_{run.job_id}_")
    assert site_vendor.TOKEN not in run.output + json.dumps(env)
    runs = [(m, p) for m, p, _ in acme.seen if p.startswith("/v1/runs")]
    assert runs == [("POST", "/v1/runs"), ("GET", f"/v1/runs/{next(iter(acme.runs))}")]
    assert {auth for _, _, auth in acme.seen} == {f"Bearer {site_vendor.TOKEN}"}
    assert journal(lab, "SELECT name, shots FROM vendor_jobs WHERE job_id = ?",
                   run.job_id) == [(QPU, 8)]
