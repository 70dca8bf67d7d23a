"""``pasqal-local``: an on-premises Pasqal QPU behind Pasqal's Warden middleware, which
knows users by MUNGE (resource.py). Jobs reach Warden themselves, with their own MUNGE
credential and the job's Warden session: nothing goes through the broker."""

from slurm_qpu.vendors.record import Vendor

VENDOR = Vendor(
    type_name="pasqal-local",
    resource="slurm_qpu.vendors.pasqal_local.resource:PasqalLocalType",
    env_prefix="QRMI_",
    payload="pasqal-sequence",
    target_qubits="slurm_qpu.vendors.common.target:pulser_qubits",
)
