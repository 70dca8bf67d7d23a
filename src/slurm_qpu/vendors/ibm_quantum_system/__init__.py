"""``ibm-quantum-system`` (legacy ``direct-access``): an on-premises IBM Quantum System through
its REST API. resource.py runs tasks (input and results through S3); view.py is what a job
may do through the broker; storage.py is the job's share of the site's S3 bucket."""

from slurm_qpu.vendors.record import Allowed, Legacy, Vendor, seconds

VENDOR = Vendor(
    type_name="ibm-quantum-system",
    resource="slurm_qpu.vendors.ibm_quantum_system.resource:IbmQuantumSystemType",
    env_prefix="QRMI_IBM_QS_",
    legacy=(Legacy("direct-access", "QRMI_IBM_DA_"),),
    overrides=(
        Allowed("QRMI_IBM_QS_TIMEOUT_SECONDS", seconds(1, 8 * 3600),
                "per-task timeout, in seconds"),
    ),
    payload="qiskit-primitive",
    view="slurm_qpu.vendors.ibm_quantum_system.view:IbmQuantumSystemView",
    target_qubits="slurm_qpu.vendors.ibm_quantum_system.resource:qubits_in_target",
)
