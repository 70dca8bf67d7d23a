"""Deprecated: the site-vendor API is ``slurm_qpu.vendors`` now (this alias stays for one
release, so that a site's type written against it keeps loading)."""

from __future__ import annotations

import warnings
from typing import Any

warnings.warn("slurm_qpu.resources is deprecated: import from slurm_qpu.vendors",
              DeprecationWarning, stacklevel=2)


def __getattr__(name: str) -> Any:
    import slurm_qpu.vendors

    return getattr(slurm_qpu.vendors, name)
