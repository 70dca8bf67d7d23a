"""Talking to vendors' clouds: one HTTP client with deadlines, bounded retries and typed
errors carrying the vendor's own message, and the IBM Cloud IAM token exchange.

The names below are loaded on first use (PEP 562): a prolog that only needs
``slurm_qpu.vendor.munge`` must not import the HTTP stack with it."""

from __future__ import annotations

from importlib import import_module
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from slurm_qpu.vendor.http import (
        RetryPolicy,
        VendorAuthError,
        VendorClient,
        VendorError,
        VendorNotFound,
        VendorUnavailable,
    )
    from slurm_qpu.vendor.iam import IamToken, IamTokenSource

_WHERE = {
    "RetryPolicy": "http", "VendorAuthError": "http", "VendorClient": "http",
    "VendorError": "http", "VendorNotFound": "http", "VendorUnavailable": "http",
    "IamToken": "iam", "IamTokenSource": "iam",
}

__all__ = [
    "IamToken",
    "IamTokenSource",
    "RetryPolicy",
    "VendorAuthError",
    "VendorClient",
    "VendorError",
    "VendorNotFound",
    "VendorUnavailable",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
