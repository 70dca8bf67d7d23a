"""The node side of the broker's API: what the prolog and epilog (root) call.

Each request carries a fresh MUNGE credential bound to it. A broker that is restarting
is waited for, so a broker upgrade does not fail the jobs that start meanwhile; the errors
name the broker and what to check. ``deadline`` (the plugstack's ``broker_timeout``) bounds
the whole call, however the broker behaves: every connect, send and receive waits at most
what is left of it (broker/bounded.py), as does the MUNGE credential, no attempt starts
without time left, and no pause between attempts runs past it.

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

from slurm_qpu import munge

TYPE_CHECKING = False
if TYPE_CHECKING:
    import http.client
    import ssl

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
    deadline: float = 60.0  # seconds for a whole call, its retries included
    timeout: float = 30.0  # seconds for one attempt (within what is left of the deadline)
    transport: httpx.BaseTransport | None = None  # tests: answer without a network
    # makes a credential; None: munged's, made within the time left (tests pass their own)
    encode: Callable[[bytes], str] | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _conn: http.client.HTTPConnection | None = field(default=None, repr=False)
    _tls: ssl.SSLContext | None = field(default=None, repr=False)

    def _credential(self, payload: bytes, left: float) -> str:
        if self.encode is None:
            return munge.encode(payload, timeout=left)
        return self.encode(payload)

    def _send(self, method: str, path: str, body: bytes, headers: dict[str, str],
              until: float) -> tuple[int, bytes]:
        """One request, over by ``until`` (on ``clock``); _NoAnswer when it got no HTTP
        answer in that time."""
        def left() -> float:
            return until - self.clock()

        if self.transport is not None:
            import httpx

            with httpx.Client(base_url=self.url.rstrip("/"), transport=self.transport,
                              timeout=max(left(), 0.001)) as c:
                try:
                    r = c.request(method, path, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    raise _NoAnswer(_reason(exc)) from exc
                return r.status_code, r.content
        import http.client

        from slurm_qpu.broker import bounded

        url = urlsplit(self.url)
        https = url.scheme == "https"
        if self._conn is None:
            if https:
                import ssl

                self._tls = self._tls or ssl.create_default_context()
                self._conn = http.client.HTTPSConnection(url.netloc, context=self._tls)
            else:
                self._conn = http.client.HTTPConnection(url.netloc)
        try:
            sock = self._conn.sock
            if isinstance(sock, bounded.Bounded):  # kept alive: bounded by this attempt
                sock.left = left
            else:  # the first request, or the broker closed the connection
                self._conn.sock = bounded.connect(url.hostname or "",
                                                  url.port or (443 if https else 80), left,
                                                  self._tls)
            self._conn.request(method, url.path.rstrip("/") + path, body=body,
                               headers=headers)
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
        """One request, retried while the broker is down or 502/503/504, all within
        ``deadline``: each attempt gets at most ``timeout`` of what is left."""
        body = b"" if payload is None else json.dumps(payload).encode()
        end = self.clock() + self.deadline
        pause, last = 0.5, "no attempt made"
        while (left := end - self.clock()) > 0:
            try:
                credential = self._credential(munge_payload(method, path, body), left)
            except munge.MungeError as exc:
                raise BrokerError(f"{exc} (the broker authenticates nodes with MUNGE)") \
                    from None
            now = self.clock()
            if now >= end:  # the credential took what was left
                break
            try:
                status, content = self._send(
                    method, path, body, {"Authorization": f"MUNGE {credential}",
                                         "Content-Type": "application/json"},
                    min(end, now + self.timeout))
            except _NoAnswer as exc:
                last = str(exc)
            else:
                if status not in RETRY_STATUSES:
                    return self._answer(method, path, status, content)
                last = f"HTTP {status}"
            if self.clock() + pause > end:
                break
            self.sleep(pause)
            pause = min(pause * 2, 5.0)
        raise BrokerError(f"the slurm-qpu broker at {self.url} does not answer ({last}) "
                          f"after {self.deadline:g} s; is it running "
                          "(systemctl status slurm-qpu-broker)?")

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
