"""What a job may do on an IQM Server through the broker: its requests go on with the site's
token in place of the job token."""

from slurm_qpu.vendors.common.view import TokenSwapView

VIEW = TokenSwapView("QRMI_IQM_ISA_ENDPOINT", "QRMI_IQM_ISA_TOKEN", "Bearer")
