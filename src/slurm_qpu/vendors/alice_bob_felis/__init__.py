"""``alice-bob-felis``: a target of Alice & Bob's Felis cloud API. resource.py runs programs;
view.py is what a job may do through the broker."""

from slurm_qpu.vendors.record import Vendor

VENDOR = Vendor(
    type_name="alice-bob-felis",
    resource="slurm_qpu.vendors.alice_bob_felis.resource:AliceBobFelisType",
    env_prefix="QRMI_AB_FELIS_",
    payload="felis-program",
    view="slurm_qpu.vendors.alice_bob_felis.view:VIEW",
)
