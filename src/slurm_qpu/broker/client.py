"""The node side of the broker's API: what the prolog and epilog (root) call.

Each request carries a fresh MUNGE credential bound to it. A broker that is restarting
is waited for, up to ``deadline`` seconds, so a broker upgrade does not fail the jobs
that start meanwhile; the errors name the broker and what to check.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from slurm_qpu.vendor import munge

RETRY_STATUSES = {502, 503, 504}


class BrokerError(Exception):
    """The broker could not be asked, or refused; the message says which and why."""


def munge_payload(method: str, path: str, body: bytes) -> bytes:
    """What a node puts in its MUNGE credential: binds it to this one request."""
    import hashlib

    return f"slurm-qpu {method} {path} {hashlib.sha256(body).hexdigest()}".encode()


@dataclass
class BrokerClient:
    url: str
    deadline: float = 60.0
    timeout: float = 30.0
    transport: httpx.BaseTransport | None = None
    encode: Callable[[bytes], str] = munge.encode
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _http: httpx.Client | None = field(default=None, repr=False)

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self.url.rstrip("/"), transport=self.transport,
                                      timeout=httpx.Timeout(self.timeout, connect=5.0))
        return self._http

    def call(self, method: str, path: str, payload: Any = None) -> Any:
        body = b"" if payload is None else json.dumps(payload).encode()
        end = self.clock() + self.deadline
        pause, last = 0.5, "no attempt made"
        while True:
            try:
                credential = self.encode(munge_payload(method, path, body))
            except munge.MungeError as exc:
                raise BrokerError(f"{exc} (the broker authenticates nodes with MUNGE)") \
                    from None
            try:
                response = self._client().request(
                    method, path, content=body,
                    headers={"Authorization": f"MUNGE {credential}",
                             "Content-Type": "application/json"})
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status_code not in RETRY_STATUSES:
                    return self._answer(method, path, response)
                last = f"HTTP {response.status_code}"
            if self.clock() + pause > end:
                raise BrokerError(f"the slurm-qpu broker at {self.url} does not answer "
                                  f"({last}) after {self.deadline:g} s; is it running "
                                  "(systemctl status slurm-qpu-broker)?")
            self.sleep(pause)
            pause = min(pause * 2, 5.0)

    def _answer(self, method: str, path: str, response: httpx.Response) -> Any:
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            message = data.get("message") if isinstance(data, dict) else None
            raise BrokerError(f"the slurm-qpu broker refused {method} {path}: "
                              f"{message or response.text.strip() or response.status_code}")
        return data

    def acquire(self, job_id: int, *, qpus: str, user: str | None, uid: int | None,
                time_limit: int | None = None, overrides: str | None = None) -> dict[str, Any]:
        answer: dict[str, Any] = self.call("POST", f"/v1/leases/{int(job_id)}", {
            "qpus": qpus, "user": user, "uid": uid, "time_limit": time_limit,
            "overrides": overrides})
        return answer

    def release(self, job_id: int) -> dict[str, Any]:
        answer: dict[str, Any] = self.call("DELETE", f"/v1/leases/{int(job_id)}")
        return answer

    def leases(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self.call("GET", "/v1/leases")
        return answer
