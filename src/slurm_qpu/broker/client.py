"""The node side of the broker's API: what the prolog and epilog (root) call.

Each request carries a fresh MUNGE credential bound to it. A broker that is restarting
is waited for, so a broker upgrade does not fail the jobs that start meanwhile; the errors
name the broker and what to check. ``deadline`` (the plugstack's ``broker_timeout``) bounds
the whole call, however the broker behaves: every connect, send and receive waits at most
what is left of it (broker/bounded.py), as does the MUNGE credential, no attempt starts
without time left, and no pause between attempts runs past it.

``url`` may name several brokers, comma-separated (``broker=URL1,URL2`` in plugstack.conf):
a broker that does not answer, or answers 502/503/504, is followed at once by the next,
and only after a whole round without an answer does the client pause. One deadline covers
every try of every broker; an attempt at one of several gets at most its share of what is
left (the rest of the round's brokers get theirs), so a broker that swallows connections
cannot take the whole deadline from the others. The broker that answered is asked first
by the next call of the same client. Several URLs are for brokers that share one journal
(or one broker that may run on either host): a lease asked of one must be the lease the
other knows.

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
from slurm_qpu.settings import broker_urls

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
    url: str  # one broker's base URL, or several separated by commas, tried in turn
    deadline: float = 60.0  # seconds for a whole call, its retries included
    timeout: float = 30.0  # seconds for one attempt (within what is left of the deadline)
    transport: httpx.BaseTransport | None = None  # tests: answer without a network
    # makes a credential; None: munged's, made within the time left (tests pass their own)
    encode: Callable[[bytes], str] | None = None
    sleep: Callable[[float], None] = time.sleep
    ca_file: str | None = None  # https: the CA bundle that verifies the broker (plugstack
    #                             broker_ca=); None: the system's trust store
    clock: Callable[[], float] = time.monotonic
    _conn: http.client.HTTPConnection | None = field(default=None, repr=False)
    _tls: ssl.SSLContext | None = field(default=None, repr=False)
    _at: int = field(default=0, repr=False)  # the broker asked first: the last that answered

    @property
    def urls(self) -> list[str]:
        return broker_urls(self.url)

    def _credential(self, payload: bytes, left: float) -> str:
        if self.encode is None:
            return munge.encode(payload, timeout=left)
        return self.encode(payload)

    def _send(self, base: str, method: str, path: str, body: bytes, headers: dict[str, str],
              until: float) -> tuple[int, bytes]:
        """One request to the broker at ``base``, over by ``until`` (on ``clock``);
        _NoAnswer when it got no HTTP answer in that time."""
        def left() -> float:
            return until - self.clock()

        if self.transport is not None:
            import httpx

            with httpx.Client(base_url=base, transport=self.transport,
                              timeout=max(left(), 0.001)) as c:
                try:
                    r = c.request(method, path, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    raise _NoAnswer(_reason(exc)) from exc
                return r.status_code, r.content
        import http.client

        from slurm_qpu.broker import bounded

        url = urlsplit(base)
        https = url.scheme == "https"
        if self._conn is not None and (self._conn.host, self._conn.port) != (
                url.hostname, url.port or (443 if https else 80)):
            self.close()  # another broker than the last attempt's
        if self._conn is None:
            if https:
                self._tls = self._tls or self._context()
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
            if type(exc).__name__ == "SSLCertVerificationError":  # asking again changes nothing
                raise BrokerError(
                    f"cannot verify the slurm-qpu broker at {base}: {exc}; "
                    + (f"is its certificate signed by a CA in broker_ca={self.ca_file}"
                       if self.ca_file else "is its CA in the system's trust store (or "
                       "name the CA bundle with broker_ca= on the plugstack line)")
                    + ", for the name the URL gives?") from None
            raise _NoAnswer(_reason(exc)) from exc

    def _context(self) -> ssl.SSLContext:
        import ssl

        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(f"broker_ca={self.ca_file}: cannot load the CA bundle: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None

    def close(self) -> None:
        """Close the connection (a prolog's exit does it; a long-lived caller closes)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def call(self, method: str, path: str, payload: Any = None) -> Any:
        """One request, retried while no broker answers or they answer 502/503/504, all
        within ``deadline``: each attempt gets at most ``timeout`` of what is left, and
        with several brokers at most its share of it."""
        body = b"" if payload is None else json.dumps(payload).encode()
        urls = self.urls or [self.url]
        end = self.clock() + self.deadline
        pause = 0.5
        last: dict[str, str] = {}  # broker -> why its last attempt got no answer
        tried = 0  # attempts in this round (a round asks every broker once)
        while (left := end - self.clock()) > 0:
            try:
                credential = self._credential(munge_payload(method, path, body), left)
            except munge.MungeError as exc:
                raise BrokerError(f"{exc} (the broker authenticates nodes with MUNGE)") \
                    from None
            now = self.clock()
            if now >= end:  # the credential took what was left
                break
            base = urls[self._at % len(urls)]
            share = (end - now) / (len(urls) - tried)  # the round's last gets all that is left
            try:
                status, content = self._send(
                    base, method, path, body, {"Authorization": f"MUNGE {credential}",
                                               "Content-Type": "application/json"},
                    min(end, now + self.timeout, now + share))
            except _NoAnswer as exc:
                last[base] = str(exc)
            else:
                if status not in RETRY_STATUSES:
                    return self._answer(method, path, status, content)
                last[base] = f"HTTP {status}"
            self._at = (self._at + 1) % len(urls)
            tried += 1
            if tried < len(urls):
                continue  # the next broker, at once
            tried = 0
            if self.clock() + pause > end:
                break
            self.sleep(pause)
            pause = min(pause * 2, 5.0)
        if len(urls) == 1:
            raise BrokerError(f"the slurm-qpu broker at {urls[0]} does not answer "
                              f"({last.get(urls[0], 'no attempt made')}) after "
                              f"{self.deadline:g} s; is it running "
                              "(systemctl status slurm-qpu-broker)?")
        reasons = "; ".join(f"{u}: {last.get(u, 'not tried')}" for u in urls)
        raise BrokerError(f"no slurm-qpu broker answers ({reasons}) after {self.deadline:g} s; "
                          "is one running (systemctl status slurm-qpu-broker on each)?")

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
                time_limit: int | None = None, overrides: str | None = None,
                component: int | None = None) -> dict[str, Any]:
        """The lease of ``job_id`` (a heterogeneous job's: its leader's id, with
        ``component`` the asking component's own id)."""
        body: dict[str, Any] = {"qpus": qpus, "user": user, "uid": uid,
                                "time_limit": time_limit, "overrides": overrides}
        if component is not None:
            body["component"] = int(component)
        answer: dict[str, Any] = self.call("POST", f"/v1/leases/{int(job_id)}", body)
        return answer

    def release(self, job_id: int) -> dict[str, Any]:
        answer: dict[str, Any] = self.call("DELETE", f"/v1/leases/{int(job_id)}")
        return answer

    def leases(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self.call("GET", "/v1/leases")
        return answer
