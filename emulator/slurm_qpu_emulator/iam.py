"""IBM Cloud IAM's API-key exchange: ``POST /identity/token``."""

from __future__ import annotations

from slurm_qpu_emulator.config import EmulatorConfig
from slurm_qpu_emulator.tokens import TokenIssuer
from slurm_qpu_emulator.web import Request, Response, Service

GRANT_TYPE = "urn:ibm:params:oauth:grant-type:apikey"


class IamService(Service):
    name = "ibm-iam"

    def __init__(self, config: EmulatorConfig, issuer: TokenIssuer,
                 prefix: str = "/identity") -> None:
        super().__init__(prefix)
        self.config = config
        self.issuer = issuer
        self.route("POST", "/token", self.token)

    def error(self, status: int, message: str) -> Response:
        return Response.json({"errorCode": f"BXNIM{status:04d}E", "errorMessage": message,
                              "context": {"requestId": "emulator"}}, status)

    def token(self, request: Request) -> Response:
        form = request.form()
        if form.get("grant_type") != GRANT_TYPE:
            return self.error(400, f"Unsupported grant type {form.get('grant_type')!r}; "
                                   f"expected {GRANT_TYPE}")
        if form.get("apikey") != self.config.api_key:
            return Response.json({"errorCode": "BXNIM0415E",
                                  "errorMessage": "Provided API key could not be found."}, 400)
        lifetime = self.issuer.lifetime
        token = self.issuer.issue("iam-ServiceId-emulator", lifetime)
        claims = self.issuer.claims(token) or {}
        return Response.json({"access_token": token, "refresh_token": "not_supported",
                              "token_type": "Bearer", "expires_in": lifetime,
                              "expiration": claims.get("exp"), "scope": "ibm openid"})
