"""``pasqal-cloud``: Pasqal Cloud (the core-fast REST API behind the pasqal-cloud SDK).
resource.py runs batches; view.py is what a job may do through the broker; sdk.py builds
the job's pasqal-cloud and pulser objects."""

from slurm_qpu.vendors.record import Vendor

VENDOR = Vendor(
    type_name="pasqal-cloud",
    resource="slurm_qpu.vendors.pasqal_cloud.resource:PasqalCloudType",
    env_prefix="QRMI_PASQAL_CLOUD_",
    payload="pasqal-sequence",
    view="slurm_qpu.vendors.pasqal_cloud.view:PasqalCloudView",
    simulator_prefixes=("EMU_",),  # Pasqal's emulators are device types named EMU_*
    target_qubits="slurm_qpu.vendors.common.target:pulser_qubits",
)
