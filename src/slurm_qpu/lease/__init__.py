"""A job's lease on each of its nodes: which QPUs it holds, kept in a local file for its
steps (``store``), and where the prolog gets it and the epilog gives it back.

``from_vendors``: direct mode, as spank_qrmi: the job's first node acquires from the
vendors once for the whole job, the other nodes learn the result through the job's record
in slurmctld (``coordination``), and the first node releases once. ``from_broker``: broker
mode: every node asks the broker, which acquires and releases once. Neither raises: a
failure is recorded in the lease, and the job's first task fails with its message.
"""
