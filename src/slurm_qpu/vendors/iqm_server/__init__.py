"""``iqm-server``: an IQM quantum computer behind the IQM Server REST API. resource.py runs
jobs; view.py is what a job may do through the broker."""

from slurm_qpu.vendors.record import Vendor

JOB_TYPES = ("circuit", "run", "sweep")  # the job kinds of POST /api/v1/jobs/{qc}/{kind}
MAX_TAG = 50  # the server's documented limit for a job's ``tag``

VENDOR = Vendor(
    type_name="iqm-server",
    resource="slurm_qpu.vendors.iqm_server.resource:IqmServerType",
    env_prefix="QRMI_IQM_ISA_",
    payload="iqm-job",
    view="slurm_qpu.vendors.iqm_server.view:VIEW",
    target_qubits="slurm_qpu.vendors.iqm_server.resource:qubits_in_target",
)
