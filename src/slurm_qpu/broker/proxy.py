"""The job proxy: a job's vendor calls, ``/p/<qpu>/<vendor path>``, authenticated by its job
token (or, on a view's signed route, by credentials its lease derives), decided by the
QPU's view (slurm_qpu.vendors.<vendor>.view) and forwarded with the site's credentials.
The proxy knows no vendor: a view says what a job may do, and how it authenticates on
routes it serves differently (vendors/common/view.py is the contract).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from slurm_qpu.broker.admission import json_cost
from slurm_qpu.broker.exchange import Exchange, Routes, decoded, decoded_answer, token_of
from slurm_qpu.broker.httpserver import Refused
from slurm_qpu.broker.journal import LeaseRecord
from slurm_qpu.broker.nodeapi import NODE_API_MAX_BODY
from slurm_qpu.broker.service import LeaseService
from slurm_qpu.broker.upstream import Answer, UpstreamError
from slurm_qpu.log import CURRENT_JOB
from slurm_qpu.vendors.common.base import TypeNotAvailable
from slurm_qpu.vendors.common.http import VendorError
from slurm_qpu.vendors.common.view import (
    DENIED,
    ENDED,
    FORWARD,
    OVER_RATE,
    TIMEOUT,
    TOO_LARGE,
    UNKNOWN_CREDENTIAL,
    UNREACHABLE,
    Call,
    Decision,
    Forward,
    Refusal,
    SignedRoute,
    Upstream,
    View,
)
from slurm_qpu.vendors.registry import view_for

if TYPE_CHECKING:
    pass

log = logging.getLogger("slurm_qpu.broker")  # the broker's log, as before the split

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "transfer-encoding", "upgrade", "host", "content-length"}
PROXY_PATH = re.compile(r"^/p/([A-Za-z_][A-Za-z0-9_]*)(?:/(.*))?$")
# Felis's Qiskit provider needs its endpoint to end in "/" and qrmi then joins "/v1/..." to
# it: one empty segment right after the QPU's name is that join's, not a trick
JOINED_ON_SLASH = re.compile(r"^(/p/[A-Za-z_][A-Za-z0-9_]*/)/")


@dataclass
class JobCaller:
    """The job behind a proxied request (the views' JobSide)."""

    service: LeaseService
    lease: LeaseRecord
    name: str
    session: str

    @property
    def job_id(self) -> int:
        return self.lease.job_id

    def owns(self, vendor_id: str) -> bool:
        return self.service.journal.owns_vendor_job(self.lease, self.name, vendor_id)

    def remember(self, vendor_id: str, *, shots: int | None = None,
                 counted: bool = True) -> None:
        self.service.journal.add_vendor_job(self.lease, self.name, vendor_id, shots=shots,
                                            counted=counted)

    def report_usage(self, vendor_id: str, qpu_seconds: float) -> None:
        self.service.journal.set_vendor_job_usage(self.lease, self.name, vendor_id,
                                                  qpu_seconds=qpu_seconds)

    def access_token(self) -> tuple[str, int]:
        return self.service.tokens.access_token(self.lease)

    # for views that derive the job's credentials from its token (IBM Quantum System's S3)
    def job_token(self) -> str:
        return self.service.job_token(self.lease)

    def settings(self) -> Mapping[str, str] | None:
        return self.service.resource_settings(self.lease, self.name)


class Proxy(Routes):
    """The proxy's routes (a part of the broker's request handler)."""

    def _not_failing_too_often(self) -> None:
        """An address whose job credentials (tokens, S3 signatures) failed too often
        waits before its next one is checked (that is the work it would cost). Node
        requests are not held back: a job that keeps failing must not make its node's
        prologs and epilogs wait; a bad MUNGE credential costs munged little."""
        wait = self.broker.failures.wait(self.peer)
        if wait:
            raise Refused(429, f"too many failed authentications from "
                               f"{self.peer}; try again in "
                               f"{max(1, round(wait))} s", wait)

    def _failed(self) -> None:
        """Count a failed authentication against the client's address."""
        self.broker.failures.take(self.peer)

    def _proxy(self, ex: Exchange, path: str, query: str, who: dict[str, Any]) -> None:
        self._not_failing_too_often()
        m = PROXY_PATH.match(path)
        if not m:
            raise Refused(404, "expected /p/<qpu>/<path>")
        name, rest = m.group(1), m.group(2) or ""
        who["qpu"] = name
        call = Call(self.command, rest, query)
        # the view of the QPU the path names (the public catalog says its type) decides
        # how a job authenticates on this route; which QPUs the job holds is checked next
        route_view = self._route_view(name)
        token = token_of(self.headers)
        if token is None:
            signed = route_view.signed_route(call, self.path.partition("?")[0],
                                             list(self.headers.items()))
            if signed is not None:
                self._signed(ex, name, route_view, signed, who)
                return
        form_token = None
        field = route_view.form_credential(call) if token is None else None
        if field is not None:
            form = parse_qs(ex.whole_body(NODE_API_MAX_BODY).decode("utf-8", "replace"))
            form_token = (form.get(field) or [""])[0] or None
        lease = self.service.authenticate(token or form_token)
        if lease is None:
            self._failed()
            raise Refused(401, "missing, unknown or expired job token (a job's token "
                               "stops working when the job ends)")
        who["job"], who["user"] = lease.job_id, lease.user or "-"
        CURRENT_JOB.set(lease.job_id)
        ex.memory.belongs_to(f"job {lease.job_id}")
        held = lease.holds(name)
        if held is None:
            raise Refused(403, f"job {lease.job_id} did not request QPU {name} "
                               f"(it holds {', '.join(lease.names) or 'none'})")
        wait = self.broker.rates.take(lease.job_id)
        if wait:
            raise Refused(429, f"job {lease.job_id} is over its rate limit of "
                               f"{self.broker.limits.rate:g} requests per second", wait)
        view = view_for(held.type)
        if not view.proxied:
            raise Refused(404, f"QPU {name} ({held.type}) is not reached through the "
                               "broker")
        with self.broker.in_flight.enter(lease.job_id):
            self._call_view(ex, view, JobCaller(self.service, lease, name, held.token),
                            held.type, call, form_token is not None)

    def _route_view(self, name: str) -> View:
        """The view of the QPU a proxy path names, by its type in the config (a QPU
        not configured, or whose site vendor cannot be loaded: the default view, whose
        routes take a job token)."""
        rdef = self.service.config.get().get(name)
        try:
            return view_for(rdef.current_type) if rdef is not None else View()
        except TypeNotAvailable:
            return View()

    def _call_view(self, ex: Exchange, view: View, caller: JobCaller, type_name: str,
                   call: Call, body_read: bool) -> None:
        """Ask the job's view about the request (with its body, read whole and
        bounded, when the view reads it), then answer it here or forward it."""
        if not body_read and view.wants_body(call):
            limit = min(self.broker.limits.max_parsed, self.broker.limits.max_body)
            call.body = decoded(self.headers, ex.whole_body(limit), limit, ex.memory)
            ex.memory.take(json_cost(call.body), "checking the request body")
        decision = view.authorize(caller, call)
        if not decision.allowed:
            raise Refused(decision.status, decision.message)
        if decision.local is not None:
            ex.send(decision.local[0], decision.local[1])
            return
        self._forward(ex, self.broker.upstream(caller.lease, caller.name, type_name), call,
                      decision, view.forward_headers)

    def _signed(self, ex: Exchange, name: str, view: View, route: SignedRoute,
                who: dict[str, Any]) -> None:
        """A request the job signed with credentials its lease derives (a view's signed
        route: IBM Quantum System job storage, S3): the credentials name the lease, the
        view checks the signature against them and signs the request again for the
        site. Refusals are in the route's protocol (S3 XML errors), which its clients
        show."""
        try:
            try:
                self._signed_forward(ex, name, view, route, who)
            except Refused as exc:  # the broker's own (framing, body size, ...)
                raise Refusal(exc.status, DENIED, exc.message) from None
        except Refusal as exc:
            if ex.responded:
                self.close_connection = True
                return
            content_type, body = route.error(
                Refusal(exc.status, exc.code, self.service.redact(exc.message)),
                with_body=self.command != "HEAD")
            ex.send(exc.status, body, content_type,
                    {"Connection": "close"} if self.close_connection else None)

    def _signed_forward(self, ex: Exchange, name: str, view: View, route: SignedRoute,
                        who: dict[str, Any]) -> None:
        ref = route.lease()
        lease = self.service.journal.get(*ref) if ref else None
        if lease is None:
            self._failed()
            raise Refusal(403, UNKNOWN_CREDENTIAL,
                          f"{route.credential} is not a slurm-qpu job's")
        token = self.service.job_token(lease)
        if self.service.authenticate(token) is None:
            self._failed()
            raise Refusal(403, ENDED, f"the {route.credentials} of job {lease.job_id} "
                                      "stopped working when the job ended")
        held = lease.holds(name)
        if held is None or type(view_for(held.type)) is not type(view):
            raise Refusal(403, DENIED, f"job {lease.job_id} holds no {route.serves} "
                                       f"named {name}")
        try:  # checks the signature: only then is it known to be the job's request
            out = route.forward(token, self.service.resource_settings(lease, name) or {},
                                datetime.now(UTC))
        except Refusal as exc:
            if exc.auth_failure:
                self._failed()
            raise
        who["job"], who["user"] = lease.job_id, lease.user or "-"
        CURRENT_JOB.set(lease.job_id)
        ex.memory.belongs_to(f"job {lease.job_id}")
        if self.broker.rates.take(lease.job_id):
            raise Refusal(503, OVER_RATE, f"job {lease.job_id} is over its rate limit "
                                          f"of {self.broker.limits.rate:g} requests per second")
        with self.broker.in_flight.enter(lease.job_id):
            self._send_signed(ex, route, out)

    def _send_signed(self, ex: Exchange, route: SignedRoute, out: Forward) -> None:
        length = ex.request.length
        if length is not None and length > self.broker.limits.max_body:
            raise Refusal(413, TOO_LARGE, (
                f"request body of {length} bytes is over the broker's limit of "
                f"{self.broker.limits.max_body} bytes"))
        content: Iterator[bytes] | None = None
        if ex.request.chunked:  # the service wants a length: take the whole body first
            whole = ex.whole_body(self.broker.chunked_limit)
            content, length = iter([whole]), len(whole)
        elif length:
            content = ex.request.stream(self.broker.limits.max_body)
        headers = dict(out.headers)
        if length is not None:
            headers["content-length"] = str(length)
        if content is not None:
            held = [0]

            def hold(size: int) -> None:
                # a piece is held whole, copied once and sent with its new framing
                ex.memory.give(held[0])
                held[0] = 3 * size
                ex.memory.take(held[0], "a signed upload chunk")

            content = out.body(content, hold)
        try:
            response = self.broker.http.send(out.method, out.url, headers, content)
        except UpstreamError as exc:
            if exc.timeout:
                raise Refusal(504, TIMEOUT,
                              f"the {route.service} did not answer in time") from None
            raise Refusal(502, UNREACHABLE,
                          f"the {route.service} cannot be reached: {exc}") from None
        with response:
            decision = Decision(on_response=out.answer) \
                if out.reads_answer(response.status) else FORWARD
            self._relay(ex, response, decision)

    def _forward(self, ex: Exchange, up: Upstream, call: Call, decision: Decision,
                 allowed: frozenset[str]) -> None:
        url = f"{up.base_url}/{call.path}" + (f"?{call.query}" if call.query else "")
        # only the headers the view lists (common/view.py FORWARD_HEADERS says why each is safe)
        headers = {k: v for k, v in self.headers.items() if k.lower() in allowed}
        if call.body is not None:  # the view read it decoded: it goes on decoded
            headers = {k: v for k, v in headers.items() if k.lower() != "content-encoding"}
        if decision.on_response is not None:
            # the view reads the answer: in an encoding the broker can decode
            headers = {k: v for k, v in headers.items() if k.lower() != "accept-encoding"}
            headers["Accept-Encoding"] = "gzip"
        body: bytes | Iterator[bytes] | None = \
            decision.body if decision.body is not None else call.body
        replayable = True
        if body is None and ex.request.chunked:
            # unknown length: whole (and bounded) before the vendor hears of it, so a
            # body refused half-way never reaches it as a truncated request
            body = ex.whole_body(self.broker.chunked_limit)
        elif body is None and ex.request.length:
            # declared length, checked against the limit before the first byte: stream
            # it (a client that sends less leaves the vendor an incomplete request,
            # which HTTP discards)
            length, limit = ex.request.length, self.broker.limits.max_body
            if length > limit:
                raise ex.request.over(limit, length)
            headers["Content-Length"] = str(length)
            body, replayable = ex.request.stream(limit), False
        for attempt in (1, 2):
            try:
                auth = up.headers(attempt == 2)
            except VendorError as exc:
                raise Refused(502, f"the broker cannot authenticate to the vendor: "
                                   f"{exc}") from None
            try:
                response = self.broker.http.send(call.method, url, {**headers, **auth}, body)
            except UpstreamError as exc:
                if exc.timeout:
                    raise Refused(504, "the vendor did not answer in time") from None
                raise Refused(502, f"the vendor cannot be reached: {exc}") from None
            if response.status == 401 and attempt == 1 and replayable:
                response.close()
                continue
            break
        with response:
            self._relay(ex, response, decision)

    def _relay(self, ex: Exchange, response: Answer, decision: Decision) -> None:
        limit = self.broker.limits.max_body
        keep = [(k, v) for k, v in response.headers if k.lower() not in HOP_BY_HOP]
        if decision.on_response is not None:
            try:
                raw = response.read(limit)
            except UpstreamError as exc:
                raise Refused(504 if exc.timeout else 502,
                              "the vendor did not answer in time" if exc.timeout else
                              f"the vendor's answer broke off: {exc}") from None
            if raw is None:
                raise Refused(502, "the vendor's answer is over the broker's limit")
            # the answer to a request that changed something is counted but never
            # refused: the vendor has acted, and the view must see its answer (a job it
            # created); other requests wait for the room. A read can be asked again.
            count = ex.memory.take if self.command in ("GET", "HEAD") else \
                lambda n, what: ex.memory.force(n)
            count(len(raw), "the vendor's answer")
            raw = decoded_answer(raw, response.header("Content-Encoding"), limit)
            count(len(raw) + json_cost(raw), "checking the vendor's answer")
            body = decision.on_response(response.status, raw)
            self.send_response(response.status)
            for k, v in keep:
                if k.lower() != "content-encoding":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            ex.status, ex.bytes_out, ex.responded = response.status, len(body), True
            return
        self.send_response(response.status)
        for k, v in keep:
            self.send_header(k, v)
        length = response.header("Content-Length")
        chunked = length is None and self.command != "HEAD" and \
            response.status not in (204, 304)
        if length is not None:
            self.send_header("Content-Length", length)
        elif chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        ex.status, ex.responded = response.status, True
        try:
            for chunk in response.blocks():
                ex.bytes_out += len(chunk)
                if ex.bytes_out > limit:
                    self.close_connection = True
                    log.warning("job response over %d bytes cut off", limit)
                    return
                self.wfile.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked
                                 else chunk)
        except UpstreamError as exc:
            # the status line is out: all the job can be told is a cut connection
            self.close_connection = True
            log.warning("the vendor's answer to %s broke off: %s", self.command, exc)
            return
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
