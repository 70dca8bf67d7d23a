"""IBM Quantum System jobs through the broker, as the tests see them: a job's S3 settings
and credentials, boto3 clients for the job and for the site, and S3 error answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from harness import BrokerUnderTest

from slurm_qpu.vendors.common.s3 import S3Credentials, presign
from slurm_qpu.vendors.ibm_quantum_system import storage as s3proxy
from slurm_qpu_emulator import Emulator

QPU = "ibm_kawasaki"
P = f"{QPU}_QRMI_IBM_QS_"
BUCKET = "qpu-jobs"
REGION = "us-east-1"
# ISA for kawasaki (basis ecr, id, rz, sx, x): H on qubit 0, X on qubit 1
QASM = ('OPENQASM 3.0; include "stdgates.inc"; bit[2] meas; rz(pi/2) $0; sx $0; rz(pi/2) $0; '
        "x $1; meas[0] = measure $0; meas[1] = measure $1;")
SAMPLER = {"pubs": [[QASM, None, 64]], "version": 2, "support_qiskit": False}


def qs_settings(site: list[dict[str, Any]]) -> dict[str, str]:
    entry: dict[str, str] = next(r for r in site if r["name"] == QPU)["environment"]
    return entry


@dataclass
class Job:
    broker: BrokerUnderTest
    env: dict[str, str]
    job_id: int

    @property
    def credentials(self) -> S3Credentials:
        return S3Credentials(self.env[P + "AWS_ACCESS_KEY_ID"],
                             self.env[P + "AWS_SECRET_ACCESS_KEY"])

    @property
    def s3_endpoint(self) -> str:
        return self.env[P + "S3_ENDPOINT"]

    def stored(self, key: str) -> str:
        """Where the job's object ``key`` is in the site's bucket: under its lease's prefix."""
        return s3proxy.lease_prefix(self.credentials.access_key_id) + key

    def storage(self, task: str, seconds: int = 600) -> dict[str, dict[str, str]]:
        """The ``storage`` of a job request, presigned with the job's S3 credentials as
        qrmi does: GET for the input, PUT for the results and the logs."""
        now = datetime.now(UTC).replace(microsecond=0)
        return {part: {"type": "s3_compatible", "presigned_url": presign(
            self.credentials, REGION, method, f"{self.s3_endpoint}{BUCKET}/{part}_{task}.json",
            seconds, now)} for part, method in (("input", "GET"), ("results", "PUT"),
                                                ("logs", "PUT"))}

    def proxy(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        token = self.env[P + "IAM_APIKEY"]
        headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {token}"}
        return httpx.request(method, self.env[P + "ENDPOINT"] + path, headers=headers,
                             **kwargs)


def qs_job(broker: BrokerUnderTest, job_id: int = 21) -> Job:
    """A job holding the IBM Quantum System QPU, on ``broker``."""
    lease = broker.acquire(job_id, QPU)
    assert lease["state"] == "acquired", lease
    return Job(broker, lease["env"], job_id)


def s3_client(endpoint: str, access_key: str, secret: str, region: str = REGION) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access_key,
                        aws_secret_access_key=secret, region_name=region,
                        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                                      retries={"mode": "standard", "total_max_attempts": 1}))


def job_boto3(job: Job, **overrides: str) -> Any:
    keys = {"access_key": job.credentials.access_key_id,
            "secret": job.credentials.secret_access_key, **overrides}
    return s3_client(job.s3_endpoint, **keys)


def site_boto3(emulator: Emulator) -> Any:
    c = emulator.config
    return s3_client(emulator.url, c.s3_access_key, c.s3_secret_key, c.s3_region)


def s3_error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = exc.value.response["Error"]
    return str(error["Code"]), str(error["Message"])
