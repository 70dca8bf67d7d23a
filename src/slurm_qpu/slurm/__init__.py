"""Slurm access: what slurm-qpu asks of Slurm and tells it.

``commands`` talks to slurmctld through its command-line clients (``squeue --json``,
``scontrol``: a job's record, licenses, AdminComment), ``hostlist`` expands Slurm's node
list expressions, ``job`` holds what a prolog or epilog knows of its job, ``conf`` the
slurm.conf lines (and job_submit.lua) a qrmi_config.json implies. Standard library only.
"""
