"""IBM Cloud IAM: exchange an API key for a bearer token, and refresh it before it expires
(when less than max(6 minutes, 10 % of its lifetime) is left, as QRMI does)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from slurm_qpu.vendors.common.http import VendorAuthError, VendorClient, VendorError

GRANT_TYPE = "urn:ibm:params:oauth:grant-type:apikey"


@dataclass(frozen=True)
class IamToken:
    access_token: str
    obtained_at: float
    expires_in: float

    def needs_refresh(self, now: float) -> bool:
        left = self.obtained_at + self.expires_in - now
        return left < max(360.0, 0.1 * self.expires_in)


class IamTokenSource:
    def __init__(self, client: VendorClient, api_key: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.api_key = api_key
        self.clock = clock
        self._token: IamToken | None = None

    def token(self, force: bool = False) -> str:
        now = self.clock()
        if force or self._token is None or self._token.needs_refresh(now):
            try:
                response = self.client.request(
                    "POST", "/identity/token",
                    data={"grant_type": GRANT_TYPE, "apikey": self.api_key}, ok=(200,))
            except VendorError as exc:
                if exc.status == 400:  # IAM's answer to an unknown or disabled API key
                    raise VendorAuthError(f"{self.client.vendor} refused the API key: "
                                          f"{exc.vendor_message}", 400) from None
                raise
            body = response.json()
            if not isinstance(body, dict) or not body.get("access_token"):
                raise VendorError(f"{self.client.vendor}: IAM answered without an access token")
            self._token = IamToken(str(body["access_token"]), now,
                                   float(body.get("expires_in") or 3600))
        return self._token.access_token

    def headers(self, force: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(force)}"}
