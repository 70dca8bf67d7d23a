"""``ibm-quantum-compute-service`` (legacy ``qiskit-runtime-service``): IBM Quantum Platform,
the Qiskit Runtime REST API. resource.py acquires a session per job; view.py is what a job
may do through the broker; sdk.py builds the job's qiskit-ibm-runtime objects."""

from slurm_qpu.vendors.record import Allowed, Legacy, Vendor, choice, seconds

MAX_SESSION_TTL = 8 * 3600

VENDOR = Vendor(
    type_name="ibm-quantum-compute-service",
    resource="slurm_qpu.vendors.ibm_quantum_compute.resource:IbmQuantumComputeType",
    env_prefix="QRMI_IBM_QCS_",
    legacy=(Legacy("qiskit-runtime-service", "QRMI_IBM_QRS_"),),
    overrides=(
        Allowed("QRMI_IBM_QCS_SESSION_MODE", choice("dedicated", "batch"),
                "session mode (dedicated or batch)"),
        Allowed("QRMI_IBM_QCS_SESSION_MAX_TTL", seconds(60, MAX_SESSION_TTL),
                "longest life of the job's session, in seconds"),
        Allowed("QRMI_IBM_QCS_TIMEOUT_SECONDS", seconds(1, MAX_SESSION_TTL),
                "per-task timeout, in seconds"),
    ),
    payload="qiskit-primitive",
    view="slurm_qpu.vendors.ibm_quantum_compute.view:IbmQuantumComputeView",
    target_qubits="slurm_qpu.vendors.ibm_quantum_compute.resource:qubits_in_target",
)
