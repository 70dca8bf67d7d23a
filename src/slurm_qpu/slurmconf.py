"""``slurm-qpu slurm-conf``: the Slurm configuration lines a qrmi_config.json implies.

Two ways to count QPU use, printed together so an admin picks one (or both):

* ``Licenses=qpu_<name>:<max_jobs>``, cluster-wide: a job holding ``qpu_<name>`` counts
  against the QPU wherever it runs; the right tool for cloud QPUs any node can reach;
* ``GresTypes=qpu`` and one ``qpu`` GRES type per QPU on the node(s) beside it: for
  on-prem QPUs wired to given nodes (the tutorial's ``quantum`` partition).

``max_jobs`` is the resource's ``"slurm": {"max_jobs": N}`` (default 1: a dedicated
session locks the QPU for its job).
"""

from __future__ import annotations

from slurm_qpu.config import QrmiConfig


def license_name(qpu: str) -> str:
    """The Slurm license that counts jobs holding ``qpu`` (QPU names are valid
    environment-variable prefixes, hence valid license names)."""
    return f"qpu_{qpu}"


def render(config: QrmiConfig, nodes: str = "NODES_BESIDE_THE_QPUS") -> str:
    resources = config.resources
    licenses = ",".join(f"{license_name(r.name)}:{r.slurm.max_jobs}" for r in resources)
    gres = ",".join(f"qpu:{r.name}:{r.slurm.max_jobs}" for r in resources)
    lines = [
        "# ---- slurm.conf (controller and every node) -------------------------------",
        "# one license per QPU: at most max_jobs jobs hold it at once, on any node",
        f"Licenses={licenses}",
        "# and/or the QPUs as GRES on the node(s) beside them:",
        "GresTypes=qpu",
        f"# NodeName={nodes} ... Gres={gres}",
        "",
        f"# ---- gres.conf (on {nodes}) ----",
        *(f"NodeName={nodes} Name=qpu Type={r.name} Count={r.slurm.max_jobs}"
          for r in resources),
    ]
    policies = [r for r in resources
                if r.slurm.partitions or r.slurm.accounts or r.slurm.qos]
    if policies:
        lines += ["", "# ---- who may use which QPU (declared; not yet enforced at submit) ----"]
        for r in policies:
            rules = [f"{what}={','.join(values)}" for what, values in
                     (("partitions", r.slurm.partitions), ("accounts", r.slurm.accounts),
                      ("qos", r.slurm.qos)) if values]
            lines.append(f"# {r.name}: {' '.join(rules)}")
    return "\n".join(lines) + "\n"
