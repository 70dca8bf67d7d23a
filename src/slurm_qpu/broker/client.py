"""The node side of the broker's API: what the prolog and epilog (root) call.

Each request carries a fresh MUNGE credential bound to it. A broker that is restarting
is waited for, up to ``deadline`` seconds, so a broker upgrade does not fail the jobs
that start meanwhile; the errors name the broker and what to check.

Requests go through the standard library's http.client: every prolog and epilog is a new
Python, and importing httpx and building its TLS context cost each of them ~80 ms (see
BENCHMARKS.md). Tests inject an httpx transport (``transport=httpx.MockTransport(...)``);
only then is httpx imported.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from slurm_qpu.vendor import munge

TYPE_CHECKING = False
if TYPE_CHECKING:
    import http.client

    import httpx

RETRY_STATUSES = {502, 503, 504}


class BrokerError(Exception):
    """The broker could not be asked, or refused; the message says which and why."""


class _NoAnswer(Exception):
    """A request that got no HTTP answer; the text names the error ("ReadTimeout: ...")."""


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def munge_payload(method: str, path: str, body: bytes) -> bytes:
    """What a node puts in its MUNGE credential: binds it to this one request."""
    import hashlib

    return f"slurm-qpu {method} {path} {hashlib.sha256(body).hexdigest()}".encode()


@dataclass
class BrokerClient:
    url: str
    deadline: float = 60.0
    timeout: float = 30.0
    transport: httpx.BaseTransport | None = None  # tests: answer without a network
    encode: Callable[[bytes], str] = munge.encode
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _conn: http.client.HTTPConnection | None = field(default=None, repr=False)

    def _send(self, method: str, path: str, body: bytes,
              headers: dict[str, str]) -> tuple[int, bytes]:
        """One request; _NoAnswer when it got no HTTP answer."""
        if self.transport is not None:
            import httpx

            with httpx.Client(base_url=self.url.rstrip("/"), transport=self.transport) as c:
                try:
                    r = c.request(method, path, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    raise _NoAnswer(_reason(exc)) from exc
                return r.status_code, r.content
        import http.client

        if self._conn is None:
            url = urlsplit(self.url)
            cls = (http.client.HTTPSConnection if url.scheme == "https"
                   else http.client.HTTPConnection)
            self._conn = cls(url.netloc, timeout=self.timeout)
        prefix = urlsplit(self.url).path.rstrip("/")
        try:
            self._conn.request(method, prefix + path, body=body, headers=headers)
            response = self._conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._conn.close()  # a fresh connection for the next attempt
            self._conn = None
            raise _NoAnswer(_reason(exc)) from exc

    def close(self) -> None:
        """Close the connection (a prolog's exit does it; a long-lived caller closes)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

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
                status, content = self._send(
                    method, path, body, {"Authorization": f"MUNGE {credential}",
                                         "Content-Type": "application/json"})
            except _NoAnswer as exc:
                last = str(exc)
            else:
                if status not in RETRY_STATUSES:
                    return self._answer(method, path, status, content)
                last = f"HTTP {status}"
            if self.clock() + pause > end:
                raise BrokerError(f"the slurm-qpu broker at {self.url} does not answer "
                                  f"({last}) after {self.deadline:g} s; is it running "
                                  "(systemctl status slurm-qpu-broker)?")
            self.sleep(pause)
            pause = min(pause * 2, 5.0)

    @staticmethod
    def _answer(method: str, path: str, status: int, content: bytes) -> Any:
        try:
            data = json.loads(content)
        except ValueError:
            data = None
        if status >= 400:
            message = data.get("message") if isinstance(data, dict) else None
            text = content.decode(errors="replace").strip()
            raise BrokerError(f"the slurm-qpu broker refused {method} {path}: "
                              f"{message or text or status}")
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
