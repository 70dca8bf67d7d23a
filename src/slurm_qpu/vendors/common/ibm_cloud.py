"""What both IBM vendors share in broker mode (IBM Quantum Platform and IBM Quantum System
speak IBM Cloud's authentication): the broker signs in upstream with the site's API key at
IBM Cloud IAM and sends the real Service-CRN; a job holds a placeholder CRN and its job
token as the "API key", and the broker answers the SDKs' IAM exchange for it itself."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from slurm_qpu.vendors.common.view import FORWARD_HEADERS, Call, Decision, JobSide, Upstream

PLACEHOLDER_CRN = "crn:v1:slurm-qpu:broker:job:{job}::"
IAM_ROUTE = "identity/token"


class IamUpstream:
    """IBM Cloud: a bearer from IAM for the site's API key, and the Service-CRN."""

    prefix = ""

    def upstream(self, settings: Mapping[str, str]) -> Upstream:
        from slurm_qpu.vendors.common.http import VendorClient
        from slurm_qpu.vendors.common.iam import IamTokenSource

        p = self.prefix
        iam = IamTokenSource(VendorClient(settings.get(p + "IAM_ENDPOINT")
                                          or "https://iam.cloud.ibm.com", "IBM Cloud IAM"),
                             settings.get(p + "IAM_APIKEY", ""))
        crn = settings.get(p + "SERVICE_CRN", "")

        def headers(force: bool) -> dict[str, str]:
            return {**iam.headers(force), "Service-CRN": crn}

        return Upstream(self._api_root(settings.get(p + "ENDPOINT", "")), headers)

    @staticmethod
    def _api_root(endpoint: str) -> str:
        return endpoint.rstrip("/")

    def form_credential(self, call: Call) -> str | None:
        """The SDKs' API-key exchange sends the 'API key' (the job token) in a form."""
        return "apikey" if call.path == IAM_ROUTE and call.method == "POST" else None

    def iam_answer(self, job: JobSide, call: Call) -> Decision:
        """The SDKs' API-key exchange, answered here: the job token is the 'API key' and
        the access token is a JWT naming the job's lease."""
        token, life = job.access_token()
        body = {"access_token": token, "refresh_token": "not_supported", "token_type": "Bearer",
                "expires_in": life, "expiration": None, "scope": "slurm-qpu-job"}

        body["expiration"] = int(time.time()) + life
        return Decision(local=(200, json.dumps(body).encode()))



# qiskit-ibm-runtime and qrmi also send these: the API version the client was written for
# (the service answers in that version's shapes) and the client's name and version
IBM_HEADERS = FORWARD_HEADERS | {"ibm-api-version", "x-qx-client-application"}

