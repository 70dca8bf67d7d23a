"""slurm-qpu support for the Acme Quantum cloud: a complete site vendor.

Acme Quantum is fictional; its cloud (``acme_qpu.cloud``, a small server to try this
package with) has devices, runs of a program with a number of shots, and one API token per
account. This record is all slurm-qpu reads at submit time (standard library only); the
heavy parts are named by import string and loaded when a QPU of this type is used.
"""

from slurm_qpu.vendors import Allowed, Vendor

VENDOR = Vendor(
    type_name="acme-qpu",  # "type" in qrmi_config.json
    resource="acme_qpu.resource:AcmeQpuType",  # acquires, releases, runs programs
    env_prefix="QRMI_ACME_",  # its settings: QRMI_ACME_ENDPOINT, QRMI_ACME_TOKEN
    # what a user may set from their environment (<qpu>_QRMI_ACME_SHOTS), nothing else
    overrides=(Allowed("QRMI_ACME_SHOTS", lambda v: None if v.isdigit() else "digits",
                       "default shots of a run"),),
    payload="qiskit-primitive",  # what `slurm-qpu run` reads for it
    view="acme_qpu.view:VIEW",  # what its jobs may do through the broker
)
