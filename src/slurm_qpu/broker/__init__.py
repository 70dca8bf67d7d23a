"""slurm-qpu broker: the one holder of the vendor credentials.

It acquires and releases QPUs for jobs (asked by the prolog/epilog, authenticated with
MUNGE), keeps its leases in a durable journal, and proxies the jobs' vendor API calls,
adding the real authentication upstream: a job only ever holds a token that dies with it.
Kept import-light: the prolog imports ``slurm_qpu.broker.client`` from here.
"""
