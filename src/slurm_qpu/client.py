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

from collections.abc import Mapping
from typing import Any

from slurm_qpu.jobenv import JobEnvError, job_resource, job_resources
from slurm_qpu.vendors.common.base import QuantumResource, ResourceSpec
from slurm_qpu.vendors.common.sdk import ClientError

__all__ = ["ClientError", "JobEnvironmentError", "ibm_backend", "ibm_service", "ibm_session",
           "pasqal_client", "pulser_connection", "qpus", "resource"]

_IBM_COMPUTE = "ibm-quantum-compute-service"
_PASQAL_CLOUD = "pasqal-cloud"


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
    from slurm_qpu.vendors.registry import create

    built: QuantumResource = create(_spec(name, environ))  # type: ignore[assignment]
    return built


def ibm_service(name: str | None = None, environ: Mapping[str, str] | None = None) -> Any:
    """A ``QiskitRuntimeService`` for the job's IBM QPU, with the job's credentials (one
    per endpoint and key: later calls return the same service)."""
    from slurm_qpu.vendors.ibm_quantum_compute import sdk

    return sdk.service(_spec(name, environ, _IBM_COMPUTE))


def ibm_backend(name: str | None = None, environ: Mapping[str, str] | None = None) -> Any:
    """The job's IBM QPU as a qiskit-ibm-runtime backend (for transpiling, or as ``mode``)."""
    from slurm_qpu.vendors.ibm_quantum_compute import sdk

    return sdk.backend(_spec(name, environ, _IBM_COMPUTE))


def ibm_session(name: str | None = None, environ: Mapping[str, str] | None = None) -> Any:
    """The session the job's prolog opened on its IBM QPU, as a qiskit-ibm-runtime
    ``Session`` (or ``Batch`` when the QPU is configured with SESSION_MODE=batch): pass it
    as ``mode=`` to SamplerV2/EstimatorV2. The plugin closes it when the job ends; closing it
    earlier (``with`` block, ``.close()``) ends it for the rest of the job too."""
    from slurm_qpu.vendors.ibm_quantum_compute import sdk

    return sdk.session(_spec(name, environ, _IBM_COMPUTE))


def pasqal_client(name: str | None = None, environ: Mapping[str, str] | None = None) -> Any:
    """A ``PasqalCloudClient`` (pasqal-cloud SDK) for the job's Pasqal Cloud QPU."""
    from slurm_qpu.vendors.pasqal_cloud import sdk

    return sdk.client(_spec(name, environ, _PASQAL_CLOUD))


def pulser_connection(name: str | None = None,
                      environ: Mapping[str, str] | None = None) -> Any:
    """A pulser ``PasqalCloudConnection`` for the job's Pasqal Cloud QPU:
    ``pulser.QPUBackend(seq, connection=client.pulser_connection())``."""
    from slurm_qpu.vendors.pasqal_cloud import sdk

    return sdk.pulser_connection(_spec(name, environ, _PASQAL_CLOUD))


# Re-exported for programs that catch the job-environment errors.
JobEnvironmentError = JobEnvError
