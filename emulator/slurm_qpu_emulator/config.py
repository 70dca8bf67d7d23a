"""What the emulator offers and the credentials it accepts.

Defaults are fixed, documented values so a lab's qrmi_config.json can be written without
talking to the emulator; ``slurm-qpu-emulator --print-config`` prints one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EmulatorConfig:
    # IBM Cloud IAM (shared by IBM Quantum Compute and IBM Quantum System)
    api_key: str = "emulator-api-key"
    service_crn: str = "crn:v1:bluemix:public:quantum-computing:us-east:a/emulator:emulator::"
    # IBM Quantum Compute backends: emulator name -> fake-provider snapshot name
    # (qiskit_ibm_runtime/fake_provider/backends/<snapshot>)
    ibm_backends: tuple[tuple[str, str], ...] = (("ibm_manila", "manila"),
                                                  ("ibm_brisbane", "brisbane"))
    # IBM Quantum System (on-prem) backends and its S3-compatible storage
    qs_backends: tuple[tuple[str, str], ...] = (("ibm_kawasaki", "kawasaki"),
                                                 ("ibm_lagos", "lagos"))
    s3_access_key: str = "emulator-s3-access"
    s3_secret_key: str = "emulator-s3-secret"
    s3_bucket: str = "qpu-jobs"
    s3_region: str = "us-east-1"
    # Pasqal Cloud
    pasqal_username: str = "emulator-user"
    pasqal_password: str = "emulator-password"
    pasqal_client_id: str = "emulator-client"
    pasqal_client_secret: str = "emulator-client-secret"
    pasqal_project_id: str = "emulator-project"
    pasqal_devices: tuple[str, ...] = ("FRESNEL", "EMU_FREE", "EMU_MPS")
    # behaviour
    job_seconds: float = 1.0  # how long a job stays queued + running
    token_lifetime: int = 3600
    max_qubits_simulated: int = 20  # wider circuits get synthetic (marked) results
