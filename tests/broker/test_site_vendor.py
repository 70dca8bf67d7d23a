"""A site's own vendor, installed as a package with an entry point (the README's example,
examples/site-vendor), gets what a built-in vendor gets in broker mode: the broker acquires
its QPUs, its jobs reach its cloud through the proxy with only a job token, its view keeps
each job to its own device and runs, and the broker counts what they ran."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import site_vendor
from harness import BrokerUnderTest, StartBroker, bearer, set_job_environment

from slurm_qpu import client
from slurm_qpu.vendors import QiskitPrimitive, registry

QPU = "acme_1"


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The example package installed on sys.path, and its stand-in cloud on loopback."""
    site = tmp_path / "site-packages"
    site.mkdir()
    written = site_vendor.install(site)
    monkeypatch.syspath_prepend(str(site))
    for name in [m for m in sys.modules if m == "acme_qpu" or m.startswith("acme_qpu.")]:
        monkeypatch.delitem(sys.modules, name)
    registry.forget()
    from acme_qpu.cloud import AcmeCloud

    server = AcmeCloud(("127.0.0.1", 0), site_vendor.TOKEN)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()
    registry.forget()
    site_vendor.uninstall(written)


@pytest.fixture
def b(start_broker: StartBroker, cloud: Any) -> BrokerUnderTest:
    url = f"http://127.0.0.1:{cloud.server_address[1]}"
    return start_broker([{"name": QPU, "type": "acme-qpu", "environment": {
        "QRMI_ACME_ENDPOINT": url, "QRMI_ACME_TOKEN": site_vendor.TOKEN}}])


def acquired(b: BrokerUnderTest, job_id: int) -> dict[str, str]:
    lease = b.acquire(job_id, QPU)
    assert lease["state"] == "acquired", lease
    env: dict[str, str] = lease["env"]
    return env


def test_a_site_vendors_program_runs_through_the_proxy_with_only_a_job_token(
        b: BrokerUnderTest, cloud: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    env = acquired(b, 7)
    assert env[f"{QPU}_QRMI_ACME_ENDPOINT"] == f"{b.url}/p/{QPU}"
    assert env[f"{QPU}_QRMI_ACME_TOKEN"].startswith("sqpu_7_1_")
    set_job_environment(monkeypatch, env)
    qpu: Any = client.resource(QPU)
    task = qpu.task_start(QiskitPrimitive(json.dumps({"shots": 10}), "sampler"))
    assert json.loads(qpu.task_result(task).value) == {"counts": {"00": 5, "11": 5}}
    assert {auth for _, _, auth in cloud.seen} == {f"Bearer {site_vendor.TOKEN}"}
    [usage] = b.node().release(7)["usage"]
    assert (usage["qpu"], usage["type"], usage["vendor_jobs"], usage["shots"]) == \
        (QPU, "acme-qpu", 1, 10)


def test_a_site_vendors_view_keeps_a_job_to_its_own_device_and_runs(
        b: BrokerUnderTest, cloud: Any) -> None:
    mine, theirs = acquired(b, 7), acquired(b, 8)

    def call(env: dict[str, str], method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(method, f"{b.url}/p/{QPU}/{path}",
                             headers=bearer(env[f"{QPU}_QRMI_ACME_TOKEN"]),
                             content=None if body is None else json.dumps(body).encode())

    other = call(theirs, "POST", "v1/runs", {"device": QPU, "shots": 4}).json()["id"]
    before = len(cloud.seen)
    for method in ("GET", "DELETE"):
        refused = call(mine, method, f"v1/runs/{other}")
        assert (refused.status_code, refused.json()["message"]) == \
            (403, f"Acme run {other} was not started by this Slurm job")
    elsewhere = call(mine, "POST", "v1/runs", {"device": "acme_2", "shots": 4})
    assert (elsewhere.status_code, elsewhere.json()["message"]) == \
        (403, "this job holds Acme device acme_1")
    assert cloud.seen[before:] == []
    assert call(theirs, "GET", f"v1/runs/{other}").json()["counts"] == {"00": 2, "11": 2}


def test_a_site_vendor_whose_view_cannot_be_loaded_costs_a_stranger_a_401_not_a_500(
        b: BrokerUnderTest, monkeypatch: pytest.MonkeyPatch) -> None:
    from slurm_qpu.broker import proxy
    from slurm_qpu.vendors import TypeNotAvailable

    def broken(type_name: str) -> Any:
        raise TypeNotAvailable(f"resource type {type_name!r}: cannot load its view")

    monkeypatch.setattr(proxy, "view_for", broken)
    answer = httpx.get(f"{b.url}/p/{QPU}/v1/devices/{QPU}")
    assert (answer.status_code, answer.json()["message"]) == (
        401, "missing, unknown or expired job token (a job's token stops working when the "
             "job ends)")
