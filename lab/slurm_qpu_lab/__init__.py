"""A real Slurm cluster on one machine, with slurm-qpu installed: for the demo, the
real-Slurm test tier and anyone who wants to try the plugin.

munge, slurmctld and N slurmd (Debian packages, as root), each slurmd in its own network
and UTS namespace (own address, own host name ``nodeK``) and with its own plugin state
directory, so that nothing works here that would not work on compute nodes that share no
filesystem. See ``python -m slurm_qpu_lab --help``.
"""

from slurm_qpu_lab.cluster import Lab, LabError

__all__ = ["Lab", "LabError"]
