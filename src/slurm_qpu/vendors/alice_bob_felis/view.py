"""What a job may do on Alice & Bob's Felis through the broker: its requests go on with the
site's key in place of the job token."""

from slurm_qpu.vendors.common.view import TokenSwapView

VIEW = TokenSwapView("QRMI_AB_FELIS_BASE_ENDPOINT", "QRMI_AB_FELIS_API_KEY", "Basic")
