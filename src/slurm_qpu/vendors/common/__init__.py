"""The mechanism every vendor folder shares (as Slurm's gres/common/ serves its device
kinds): the resource protocol (base.py), one HTTP client with deadlines, bounded retries and
typed errors carrying the vendor's own message (http.py), the IBM Cloud IAM token exchange
(iam.py), S3 signing (s3.py), the broker view's base (view.py), payload files (payloads.py)
and the in-job SDK glue's helpers (sdk.py).

The HTTP names below are loaded on first use (PEP 562): a module that only needs the
protocol must not import the HTTP stack with it."""

from __future__ import annotations

from importlib import import_module
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from slurm_qpu.vendors.common.http import (
        RetryPolicy,
        VendorAuthError,
        VendorClient,
        VendorError,
        VendorNotFound,
        VendorUnavailable,
    )
    from slurm_qpu.vendors.common.iam import IamToken, IamTokenSource

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
