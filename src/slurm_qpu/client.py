"""What a job's program imports to reach the QPUs its job acquired.

Everything comes from the environment contract the plugin exported into the task, so a
program needs no endpoint, key or session id of its own::

    from qiskit_ibm_runtime import SamplerV2
    from slurm_qpu import client

    sampler = SamplerV2(mode=client.ibm_session("ibm_fez"))   # the session the prolog opened

Functions (``name`` defaults to the job's only QPU; a job with several must name one):

- :func:`qpus` — the job's QPUs (name, type, settings), no vendor SDK needed;
- :func:`resource` — slurm-qpu's resource object (task_start/status/result) for any type;
- :func:`ibm_service`, :func:`ibm_backend`, :func:`ibm_session` — qiskit-ibm-runtime objects
  for an ``ibm-quantum-compute-service`` QPU, bound to the job's session;
- :func:`pasqal_client`, :func:`pulser_connection` — pasqal-cloud SDK objects for a
  ``pasqal-cloud`` QPU.

The vendor SDKs are optional: ``pip install 'slurm-qpu[ibm]'`` / ``'slurm-qpu[pasqal]'``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from slurm_qpu.jobenv import JobEnvError, job_resource, job_resources
from slurm_qpu.resources.base import QuantumResource, ResourceError, ResourceSpec

__all__ = ["ClientError", "JobEnvironmentError", "ibm_backend", "ibm_service", "ibm_session",
           "pasqal_client", "pulser_connection", "qpus", "resource"]

_IBM_COMPUTE = "ibm-quantum-compute-service"
_PASQAL_CLOUD = "pasqal-cloud"
_QCS = "QRMI_IBM_QCS_"
_PASQAL = "QRMI_PASQAL_CLOUD_"
_DEFAULT_IAM = "https://iam.cloud.ibm.com"


class ClientError(ResourceError):
    """The job's QPU cannot be reached the way the program asked; the message says why."""


def qpus(environ: Mapping[str, str] | None = None) -> list[ResourceSpec]:
    """The job's QPUs in the order requested."""
    return job_resources(environ)


def _spec(name: str | None, environ: Mapping[str, str] | None,
          wanted_type: str | None = None) -> ResourceSpec:
    if name is None:
        every = job_resources(environ)
        specs = [s for s in every if wanted_type in (None, s.type)]
        if not specs:
            have = ", ".join(f"{s.name} ({s.type})" for s in every) or "none"
            raise ClientError(f"this job has no {wanted_type} QPU; its QPUs: {have}")
        if len(specs) > 1:
            what = f"{wanted_type} QPUs" if wanted_type else "QPUs"
            raise ClientError(f"this job has {len(specs)} {what} "
                              f"({', '.join(s.name for s in specs)}); name the one you want")
        spec = specs[0]
    else:
        spec = job_resource(name, environ)
    if wanted_type is not None and spec.type != wanted_type:
        raise ClientError(f"QPU {spec.name} is of type {spec.type}, not {wanted_type}")
    return spec


def resource(name: str | None = None,
             environ: Mapping[str, str] | None = None) -> QuantumResource:
    """slurm-qpu's resource object for the job's QPU ``name`` (any type)."""
    from slurm_qpu.resources.registry import create

    built: QuantumResource = create(_spec(name, environ))  # type: ignore[assignment]
    return built


def _setting(spec: ResourceSpec, key: str) -> str:
    value = spec.environment.get(key)
    if not value:
        raise ClientError(f"QPU {spec.name}: {spec.name}_{key} is not set in this job's "
                          "environment")
    return value


def _import(module: str, extra: str) -> Any:
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError:
        raise ClientError(f"{module} is not installed in this Python; install it with "
                          f"pip install 'slurm-qpu[{extra}]'") from None


# -- IBM Quantum Compute (qiskit-ibm-runtime) -------------------------------------------------

def _is_ibm_cloud(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "quantum.cloud.ibm.com" or host.endswith(".quantum.cloud.ibm.com")


_services: dict[tuple[str, ...], Any] = {}


def ibm_service(name: str | None = None, environ: Mapping[str, str] | None = None) -> Any:
    """A ``QiskitRuntimeService`` for the job's IBM QPU, with the job's credentials (one
    per endpoint and key: later calls return the same service)."""
    spec = _spec(name, environ, _IBM_COMPUTE)
    key = tuple(spec.environment.get(_QCS + k, "") for k in
                ("ENDPOINT", "IAM_ENDPOINT", "IAM_APIKEY", "SERVICE_CRN"))
    if key not in _services:
        _services[key] = _new_ibm_service(spec)
    return _services[key]


def _new_ibm_service(spec: ResourceSpec) -> Any:
    runtime = _import("qiskit_ibm_runtime", "ibm")
    endpoint = _setting(spec, _QCS + "ENDPOINT").rstrip("/")
    iam = spec.environment.get(_QCS + "IAM_ENDPOINT") or _DEFAULT_IAM
    if iam.rstrip("/") != _DEFAULT_IAM:
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
        channel="ibm_quantum_platform", token=_setting(spec, _QCS + "IAM_APIKEY"),
        instance=_setting(spec, _QCS + "SERVICE_CRN"), url=base, url_resolver=resolve)


def ibm_backend(name: str | None = None, environ: Mapping[str, str] | None = None) -> Any:
    """The job's IBM QPU as a qiskit-ibm-runtime backend (for transpiling, or as ``mode``)."""
    spec = _spec(name, environ, _IBM_COMPUTE)
    return ibm_service(spec.name, environ).backend(spec.name)


def ibm_session(name: str | None = None, environ: Mapping[str, str] | None = None) -> Any:
    """The session the job's prolog opened on its IBM QPU, as a qiskit-ibm-runtime
    ``Session`` (or ``Batch`` when the QPU is configured with SESSION_MODE=batch): pass it
    as ``mode=`` to SamplerV2/EstimatorV2. The plugin closes it when the job ends; closing it
    earlier (``with`` block, ``.close()``) ends it for the rest of the job too."""
    spec = _spec(name, environ, _IBM_COMPUTE)
    session_id = _setting(spec, "QRMI_JOB_ACQUISITION_TOKEN")
    runtime = _import("qiskit_ibm_runtime", "ibm")
    service = ibm_service(spec.name, environ)
    mode = spec.environment.get(_QCS + "SESSION_MODE", "dedicated")
    cls = runtime.Batch if mode == "batch" else runtime.Session
    return cls.from_id(session_id, service)


# -- Pasqal Cloud (pasqal-cloud SDK, pulser) --------------------------------------------------

def _pasqal_kwargs(spec: ResourceSpec) -> dict[str, Any]:
    """Keyword arguments shared by PasqalCloudClient and PasqalCloudConnection."""
    endpoints_mod = _import("pasqal_cloud.endpoints", "pasqal")
    env = spec.environment
    base = (env.get(_PASQAL + "BASE_URL") or "https://apis.pasqal.cloud").rstrip("/")
    kwargs: dict[str, Any] = {
        "project_id": _setting(spec, _PASQAL + "PROJECT_ID"),
        "endpoints": endpoints_mod.Endpoints(core=f"{base}/core-fast",
                                             account=f"{base}/account"),
    }
    token_url = env.get(_PASQAL + "AUTH_ENDPOINT")
    if token_url and "://" not in token_url:
        token_url = "https://" + token_url
    username = env.get(_PASQAL + "USERNAME") or env.get("PASQAL_USERNAME")
    password = env.get(_PASQAL + "PASSWORD") or env.get("PASQAL_PASSWORD")
    if username and password:
        kwargs.update(username=username, password=password)
        if token_url:
            kwargs["auth_config"] = endpoints_mod.TokenProviderConf(
                token_endpoint=token_url,
                public_client_id=env.get(_PASQAL + "CLIENT_ID") or "slurm-qpu",
                audience=env.get(_PASQAL + "AUDIENCE") or "https://apis.pasqal.cloud/account/api/v1",
                realm="pcs-users", grant_type="http://auth0.com/oauth/grant-type/password-realm")
        return kwargs
    kwargs["token_provider"] = _token_provider(spec)
    return kwargs


def _token_provider(spec: ResourceSpec) -> Any:
    """A pasqal-cloud TokenProvider backed by slurm-qpu's own Pasqal authentication (static
    token or client credentials, which the SDK itself does not offer)."""
    auth = _import("pasqal_cloud.authentication", "pasqal")
    from slurm_qpu.resources.pasqal_cloud import token_source
    from slurm_qpu.vendor.http import RetryPolicy

    source = token_source(spec, None, RetryPolicy())

    class JobTokenProvider(auth.TokenProvider):  # type: ignore[misc,name-defined]
        def get_token(self) -> str:
            return source.headers()["Authorization"].removeprefix("Bearer ")

    return JobTokenProvider()


def pasqal_client(name: str | None = None, environ: Mapping[str, str] | None = None) -> Any:
    """A ``PasqalCloudClient`` (pasqal-cloud SDK) for the job's Pasqal Cloud QPU."""
    spec = _spec(name, environ, _PASQAL_CLOUD)
    sdk = _import("pasqal_cloud.pasqal_cloud_client", "pasqal")
    return sdk.PasqalCloudClient(**_pasqal_kwargs(spec))


def pulser_connection(name: str | None = None,
                      environ: Mapping[str, str] | None = None) -> Any:
    """A pulser ``PasqalCloudConnection`` for the job's Pasqal Cloud QPU:
    ``pulser.QPUBackend(seq, connection=client.pulser_connection())``."""
    spec = _spec(name, environ, _PASQAL_CLOUD)
    connection = _import("pasqal_cloud.pasqal_cloud_connection", "pasqal")
    return connection.PasqalCloudConnection(**_pasqal_kwargs(spec))


# Re-exported for programs that catch the job-environment errors.
JobEnvironmentError = JobEnvError
