"""pasqal-cloud SDK objects for a job's Pasqal Cloud QPU, from the job's environment
(slurm_qpu.client offers them to programs)."""

from __future__ import annotations

from typing import Any

from slurm_qpu.vendors.common.base import ResourceSpec
from slurm_qpu.vendors.common.sdk import optional_import, setting

PASQAL = "QRMI_PASQAL_CLOUD_"


def _kwargs(spec: ResourceSpec) -> dict[str, Any]:
    """Keyword arguments shared by PasqalCloudClient and PasqalCloudConnection."""
    endpoints_mod = optional_import("pasqal_cloud.endpoints", "pasqal")
    env = spec.environment
    base = (env.get(PASQAL + "BASE_URL") or "https://apis.pasqal.cloud").rstrip("/")
    kwargs: dict[str, Any] = {
        "project_id": setting(spec, PASQAL + "PROJECT_ID"),
        "endpoints": endpoints_mod.Endpoints(core=f"{base}/core-fast",
                                             account=f"{base}/account"),
    }
    token_url = env.get(PASQAL + "AUTH_ENDPOINT")
    if token_url and "://" not in token_url:
        token_url = "https://" + token_url
    username = env.get(PASQAL + "USERNAME") or env.get("PASQAL_USERNAME")
    password = env.get(PASQAL + "PASSWORD") or env.get("PASQAL_PASSWORD")
    if username and password:
        kwargs.update(username=username, password=password)
        if token_url:
            kwargs["auth_config"] = endpoints_mod.TokenProviderConf(
                token_endpoint=token_url,
                public_client_id=env.get(PASQAL + "CLIENT_ID") or "slurm-qpu",
                audience=env.get(PASQAL + "AUDIENCE") or "https://apis.pasqal.cloud/account/api/v1",
                realm="pcs-users", grant_type="http://auth0.com/oauth/grant-type/password-realm")
        return kwargs
    kwargs["token_provider"] = _token_provider(spec)
    return kwargs


def _token_provider(spec: ResourceSpec) -> Any:
    """A pasqal-cloud TokenProvider backed by slurm-qpu's own Pasqal authentication (static
    token or client credentials, which the SDK itself does not offer)."""
    auth = optional_import("pasqal_cloud.authentication", "pasqal")
    from slurm_qpu.vendors.common.http import RetryPolicy
    from slurm_qpu.vendors.pasqal_cloud.resource import token_source

    source = token_source(spec, None, RetryPolicy())

    class JobTokenProvider(auth.TokenProvider):  # type: ignore[misc,name-defined]
        def get_token(self) -> str:
            return source.headers()["Authorization"].removeprefix("Bearer ")

    return JobTokenProvider()


def client(spec: ResourceSpec) -> Any:
    """A ``PasqalCloudClient`` (pasqal-cloud SDK) for the job's Pasqal Cloud QPU."""
    sdk = optional_import("pasqal_cloud.pasqal_cloud_client", "pasqal")
    return sdk.PasqalCloudClient(**_kwargs(spec))


def pulser_connection(spec: ResourceSpec) -> Any:
    """A pulser ``PasqalCloudConnection`` for the job's Pasqal Cloud QPU."""
    connection = optional_import("pasqal_cloud.pasqal_cloud_connection", "pasqal")
    return connection.PasqalCloudConnection(**_kwargs(spec))
