"""What a prolog or epilog knows about its job, as plain values.

Its own module, standard library only: the broker-mode prolog needs it and must not pay
for importing the direct-mode lifecycle (the config models, every vendor type)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobFacts:
    """What the prolog/epilog knows about the job, as plain values."""

    job_id: int
    node: str  # this node
    nodes: tuple[str, ...]  # all nodes of the job, in Slurm's order
    uid: int | None = None
    user: str | None = None
    # a heterogeneous job's component: the het leader's job id (SLURM_HET_JOB_ID), which
    # keys the one lease of every component
    het_job_id: int | None = None

    @property
    def lease_id(self) -> int:
        """The job id the QPU lease is kept under: the het leader's for a het component."""
        return self.het_job_id or self.job_id

    @property
    def first_node(self) -> str:
        return self.nodes[0] if self.nodes else self.node

    @property
    def multi_node(self) -> bool:
        return len(self.nodes) > 1
