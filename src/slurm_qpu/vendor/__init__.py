"""Talking to vendors' clouds: one HTTP client with deadlines, bounded retries and typed
errors carrying the vendor's own message, and the IBM Cloud IAM token exchange."""

from slurm_qpu.vendor.http import (
    RetryPolicy,
    VendorAuthError,
    VendorClient,
    VendorError,
    VendorNotFound,
    VendorUnavailable,
)
from slurm_qpu.vendor.iam import IamToken, IamTokenSource

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
