"""``local-simulator``: a network-free QPU for tests, the demo and site smoke tests (see
resource.py). No credentials, so nothing to proxy: jobs read its settings directly."""

from slurm_qpu.vendors.record import Vendor

VENDOR = Vendor(
    type_name="local-simulator",
    resource="slurm_qpu.vendors.local_simulator.resource:LocalSimulatorType",
    env_prefix="QRMI_LOCAL_SIM_",
    payload="qiskit-primitive",
    simulator_prefixes=("",),  # a simulator, whatever its name
)
