"""What a job's request carries to the vendor, and what it can claim there: only the headers
its QPU's view allows (a gateway in front of a vendor may act on X-HTTP-Method-Override,
X-Original-URL and the like, which would let a request mean something else than what the
broker checked), and only the vendor objects the vendor created for it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from harness import BrokerUnderTest, StartBroker, bearer
from qs_harness import QPU as QS_QPU
from qs_harness import qs_job

from slurm_qpu_emulator import Emulator

SNEAKY = {"X-HTTP-Method-Override": "DELETE", "X-HTTP-Method": "DELETE",
          "X-Method-Override": "DELETE", "X-Original-URL": "/api/v1/jobs/someone-elses",
          "X-Rewrite-URL": "/api/v1/jobs/someone-elses", "X-Forwarded-Host": "evil.example",
          "X-Forwarded-For": "10.0.0.1", "X-Forwarded-Proto": "http",
          "Forwarded": "for=10.0.0.1;host=evil.example", "X-Real-IP": "10.0.0.1",
          "Cookie": "session=1", "X-Api-Key": "guess", "Origin": "https://evil.example",
          "Proxy-Authorization": "Basic eDp5", "X-Custom": "1"}


@pytest.fixture
def b(emulator: Emulator, start_broker: StartBroker) -> BrokerUnderTest:
    return start_broker(emulator.qrmi_config()["resources"])


def sent_upstream(emulator: Emulator, before: int, path_part: str) -> list[dict[str, str]]:
    return [r.headers for r in emulator.requests()[before:] if path_part in r.path]


def test_ibm_requests_reach_the_vendor_with_allow_listed_headers_only(
        b: BrokerUnderTest, emulator: Emulator) -> None:
    env = b.acquire(31, "ibm_manila")["env"]
    token = env["ibm_manila_QRMI_IBM_QCS_IAM_APIKEY"]
    before = len(emulator.requests())
    answer = httpx.get(f"{b.url}/p/ibm_manila/api/v1/backends/ibm_manila/configuration",
                       headers={**bearer(token), **SNEAKY, "IBM-API-Version": "2025-05-01",
                                "X-Qx-Client-Application": "qiskit-ibm-runtime/0.51.0",
                                "Accept": "application/json", "User-Agent": "sdk/1"})
    assert answer.status_code == 200, answer.text
    (seen,) = sent_upstream(emulator, before, "/configuration")
    for name in SNEAKY:
        assert name.lower() not in seen, name
    assert seen["ibm-api-version"] == "2025-05-01"
    assert seen["x-qx-client-application"] == "qiskit-ibm-runtime/0.51.0"
    assert seen["user-agent"] == "sdk/1" and seen["accept"] == "application/json"
    assert seen["service-crn"] == emulator.config.service_crn  # the broker's, not the job's


def test_quantum_system_and_pasqal_requests_drop_what_their_views_do_not_list(
        b: BrokerUnderTest, emulator: Emulator) -> None:
    qs = qs_job(b, 32)
    before = len(emulator.requests())
    answer = qs.proxy("GET", f"/v1/backends/{QS_QPU}", headers=SNEAKY)
    assert answer.status_code == 200, answer.text
    for seen in sent_upstream(emulator, before, f"/v1/backends/{QS_QPU}"):
        assert not {n.lower() for n in SNEAKY} & set(seen), seen
    env = b.acquire(33, "EMU_FREE")["env"]
    token = env["EMU_FREE_QRMI_PASQAL_CLOUD_AUTH_TOKEN"]
    before = len(emulator.requests())
    answer = httpx.get(f"{b.url}/p/EMU_FREE/core-fast/api/v1/devices",
                       headers={**bearer(token), **SNEAKY})
    assert answer.status_code == 200, answer.text
    (seen,) = sent_upstream(emulator, before, "/devices")
    assert not {n.lower() for n in SNEAKY} & set(seen), seen


def test_a_job_cannot_claim_a_quantum_system_job_it_did_not_create(
        b: BrokerUnderTest, emulator: Emulator) -> None:
    """Job ids of the IBM Quantum System API are the client's: a job that posts the id of
    a vendor job someone else made (another job, a direct-mode cluster on the same account)
    gets the vendor's 409, and that id stays someone else's."""
    victim, attacker = qs_job(b, 34), qs_job(b, 35)
    body: dict[str, Any] = {"id": "victims-job", "backend": QS_QPU, "program_id": "sampler",
                            "timeout_secs": 60}
    made = victim.proxy("POST", "/v1/jobs", json={**body, "storage": victim.storage("v")})
    assert made.status_code == 204, made.text
    claim = attacker.proxy("POST", "/v1/jobs", json={**body,
                                                     "storage": attacker.storage("a")})
    assert claim.status_code == 409, claim.text  # the vendor refuses a duplicate id
    for method, path in (("GET", "/v1/jobs/victims-job"), ("DELETE", "/v1/jobs/victims-job"),
                         ("POST", "/v1/jobs/victims-job/cancel")):
        answer = attacker.proxy(method, path)
        assert answer.status_code == 403, (method, path, answer.text)
        assert "was not created by this Slurm job" in answer.json()["message"]
    assert victim.proxy("GET", "/v1/jobs/victims-job").status_code == 200
