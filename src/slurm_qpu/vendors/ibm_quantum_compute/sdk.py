"""qiskit-ibm-runtime objects for a job's IBM Quantum Platform QPU, from the job's environment
(slurm_qpu.client offers them to programs): the service, the backend, the session the
prolog opened."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from slurm_qpu.vendors.common.base import ResourceSpec
from slurm_qpu.vendors.common.sdk import optional_import, setting

QCS = "QRMI_IBM_QCS_"
DEFAULT_IAM = "https://iam.cloud.ibm.com"


def _is_ibm_cloud(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "quantum.cloud.ibm.com" or host.endswith(".quantum.cloud.ibm.com")


_services: dict[tuple[str, ...], Any] = {}


def service(spec: ResourceSpec) -> Any:
    """A ``QiskitRuntimeService`` for the job's IBM QPU, with the job's credentials (one
    per endpoint and key: later calls return the same service)."""
    key = tuple(spec.environment.get(QCS + k, "") for k in
                ("ENDPOINT", "IAM_ENDPOINT", "IAM_APIKEY", "SERVICE_CRN"))
    if key not in _services:
        _services[key] = _new_service(spec)
    return _services[key]


def _new_service(spec: ResourceSpec) -> Any:
    runtime = optional_import("qiskit_ibm_runtime", "ibm")
    endpoint = setting(spec, QCS + "ENDPOINT").rstrip("/")
    iam = spec.environment.get(QCS + "IAM_ENDPOINT") or DEFAULT_IAM
    if iam.rstrip("/") != DEFAULT_IAM:
        os.environ["IAM_URL"] = iam.rstrip("/")  # read by qiskit-ibm-runtime >= 0.49
    if not _is_ibm_cloud(endpoint):
        # An on-prem gateway or the emulator: its instance is not in IBM Cloud's global
        # catalogue, which the SDK would otherwise search for the CRN.
        os.environ.setdefault("QISKIT_FUNCTIONS_EXPERIMENTAL", "1")

    def resolve(url: str, instance: str | None, private: bool = False,
                channel: str | None = None) -> str:
        return endpoint  # the exact API base the admin configured, port included

    base = endpoint.removesuffix("/api/v1")
    return runtime.QiskitRuntimeService(
        channel="ibm_quantum_platform", token=setting(spec, QCS + "IAM_APIKEY"),
        instance=setting(spec, QCS + "SERVICE_CRN"), url=base, url_resolver=resolve)


def backend(spec: ResourceSpec) -> Any:
    """The job's IBM QPU as a qiskit-ibm-runtime backend (for transpiling, or as ``mode``)."""
    return service(spec).backend(spec.name)


def session(spec: ResourceSpec) -> Any:
    """The session the job's prolog opened on its IBM QPU, as a qiskit-ibm-runtime
    ``Session`` (or ``Batch`` when the QPU is configured with SESSION_MODE=batch): pass it
    as ``mode=`` to SamplerV2/EstimatorV2. The plugin closes it when the job ends; closing it
    earlier (``with`` block, ``.close()``) ends it for the rest of the job too."""
    session_id = setting(spec, "QRMI_JOB_ACQUISITION_TOKEN")
    runtime = optional_import("qiskit_ibm_runtime", "ibm")
    mode = spec.environment.get(QCS + "SESSION_MODE", "dedicated")
    cls = runtime.Batch if mode == "batch" else runtime.Session
    return cls.from_id(session_id, service(spec))
