"""The vendor's view of emulated QPUs, as an admin with the API key sees it, and the emulator's
control endpoints (faults, maintenance, job duration): for tests and the demos."""

from __future__ import annotations

from typing import Any

import httpx

from slurm_qpu_emulator.config import EmulatorConfig

DEFAULTS = EmulatorConfig()


class EmulatorAdmin:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def _headers(self) -> dict[str, str]:
        token = self.http.post("/identity/token", data={
            "grant_type": "urn:ibm:params:oauth:grant-type:apikey",
            "apikey": DEFAULTS.api_key}).json()["access_token"]
        return {"Authorization": f"Bearer {token}", "Service-CRN": DEFAULTS.service_crn}

    def ibm(self, path: str) -> Any:
        response = self.http.get(f"/api/v1{path}", headers=self._headers())
        response.raise_for_status()
        return response.json()

    def session(self, session_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.ibm(f"/sessions/{session_id}")
        return body

    def job(self, job_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.ibm(f"/jobs/{job_id}")
        return body

    def requests(self) -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = self.http.get("/_emulator/requests").json()
        return log

    def inject(self, **fault: Any) -> None:
        self.http.post("/_emulator/faults", json=fault).raise_for_status()

    def clear_faults(self) -> None:
        self.http.delete("/_emulator/faults").raise_for_status()

    def maintenance(self, qpu: str, on: bool) -> None:
        self.http.post("/_emulator/maintenance", json={"qpu": qpu, "on": on}).raise_for_status()

    def job_seconds(self, seconds: float) -> None:
        self.http.post("/_emulator/config", json={"job_seconds": seconds}).raise_for_status()
