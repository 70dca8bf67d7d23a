"""``slurm-qpu-emulator``: one local server that speaks the vendors' real APIs.

It serves IBM Cloud IAM (``/identity/token``), the IBM Quantum Compute (Qiskit Runtime) API
(``/api/v1`` and ``/experimental/api/v1``), the IBM Quantum System API
(``/quantum-system``) with S3-compatible storage (bucket paths at the root), and Pasqal Cloud
(``/pasqal``: ``/oauth/token``, ``/core-fast``). The unmodified qiskit-ibm-runtime, pasqal-cloud
SDK and qrmi wheel run against it, and so do slurm-qpu's own resource types. A control API
under ``/_emulator`` injects faults (latency, 5xx, timeouts) and maintenance.
"""

from __future__ import annotations

from typing import Any

from slurm_qpu_emulator.config import EmulatorConfig
from slurm_qpu_emulator.ibm_backends import qiskit_ready
from slurm_qpu_emulator.tokens import TokenIssuer
from slurm_qpu_emulator.web import (
    Fault,
    HttpError,
    LoggedRequest,
    Request,
    Response,
    Server,
    Service,
)

__all__ = ["Emulator", "EmulatorConfig", "Fault"]


def _services(config: EmulatorConfig, issuer: TokenIssuer) -> list[Service]:
    # imported here: each vendor module pulls in its own (optional) dependencies lazily
    from slurm_qpu_emulator.iam import IamService
    from slurm_qpu_emulator.ibm_runtime import ibm_runtime_services
    from slurm_qpu_emulator.ibm_system import ibm_system_services
    from slurm_qpu_emulator.pasqal import pasqal_services

    return [IamService(config, issuer), *ibm_runtime_services(config, issuer),
            *ibm_system_services(config, issuer), *pasqal_services(config, issuer)]


class Emulator:
    """The emulator as a Python object: for tests (start in a thread) and the CLI."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        # qiskit must first be imported by a thread that outlives its users (see
        # pin_qiskit), and before anything else imports it: two threads importing qiskit at
        # once break its package initialisation
        qiskit_ready()
        self.issuer = TokenIssuer(lifetime=self.config.token_lifetime)
        self.server = Server(_services(self.config, self.issuer))
        self.server.controls["config"] = self._control_config

    def _control_config(self, request: Request) -> Response:
        """POST {"job_seconds": N}: how long jobs submitted from now on take (a job that
        runs long enough to be cancelled, in tests)."""
        if request.method == "POST":
            change = request.json()
            seconds = change.get("job_seconds") if isinstance(change, dict) else None
            if not isinstance(seconds, (int, float)) or seconds < 0:
                raise HttpError(400, 'expected {"job_seconds": SECONDS}')
            self.config.job_seconds = float(seconds)
        return Response.json({"job_seconds": self.config.job_seconds})

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        return self.server.start(host, port)

    def serve_forever(self, host: str, port: int) -> None:
        self.server.serve_forever(host, port)

    def stop(self) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def inject(self, fault: Fault) -> None:
        self.server.inject(fault)

    def clear_faults(self) -> None:
        self.server.clear_faults()

    def set_maintenance(self, qpu: str, on: bool = True) -> list[str]:
        return self.server.set_maintenance(qpu, on)

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (clients must re-authenticate)."""
        self.issuer.expire_all()

    def requests(self) -> list[LoggedRequest]:
        with self.server.lock:
            return list(self.server.log)

    def qrmi_config(self, base_url: str | None = None) -> dict[str, Any]:
        """A qrmi_config.json describing every QPU this emulator offers."""
        url = base_url or self.url
        return {"resources": [r for s in self.server.services for r in s.qrmi_resources(url)]}
