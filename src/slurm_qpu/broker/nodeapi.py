"""The node API: what prologs, epilogs and admins ask the broker, authenticated by MUNGE.

    GET    /v1/health                 no authentication
    GET    /v1/catalog                QPU names and types (no secrets), no authentication
    GET    /metrics                   Prometheus metrics (no job ids, no secrets), no auth.
    GET    /v1/status                 slurm-qpu status: QPUs, their jobs, errors  MUNGE, any uid
    GET    /v1/leases                 admins: active leases                   MUNGE, root
    POST   /v1/leases/<job>           prolog: acquire (idempotent)            MUNGE, root
    DELETE /v1/leases/<job>           epilog: release (idempotent)            MUNGE, root
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from slurm_qpu import munge
from slurm_qpu.broker.client import munge_payload
from slurm_qpu.broker.exchange import Exchange, Routes
from slurm_qpu.broker.httpserver import Refused
from slurm_qpu.broker.journal import JournalError, LeaseRecord
from slurm_qpu.broker.service import AcquireRequest, LeaseService
from slurm_qpu.log import CURRENT_JOB

log = logging.getLogger("slurm_qpu.broker")

NODE_API_MAX_BODY = 64 * 1024
_LEASE_PATH = re.compile(r"^/v1/leases/([0-9]{1,12})$")


class NodeApi(Routes):
    """The node API's routes (a part of the broker's request handler)."""

    def _node(self, ex: Exchange, path: str, *, any_uid: bool = False) -> bytes:
        """A node's request: its MUNGE credential is checked before its body is read
        (at most NODE_API_MAX_BODY bytes), then bound to that body. The body."""
        value = str(self.headers.get("Authorization") or "")
        scheme, _, credential = value.partition(" ")
        if scheme != "MUNGE" or not credential:
            raise Refused(401, "node requests need a MUNGE credential")
        try:
            decoded = self.broker.decode(credential.strip())
        except munge.MungeError as exc:
            raise Refused(401, str(exc)) from None
        if not any_uid and decoded.uid not in self.broker.node_uids:
            raise Refused(403, (
                f"uid {decoded.uid} may not manage leases (allowed: "
                f"{', '.join(map(str, sorted(self.broker.node_uids)))})"))
        body = ex.whole_body(NODE_API_MAX_BODY, counted=False)
        if decoded.payload != munge_payload(self.command, path, body):
            raise Refused(401, "the MUNGE credential was made for another request")
        return body

    def _node_api(self, ex: Exchange, path: str, who: dict[str, Any]) -> None:
        route = ROUTES.get((self.command, path))
        if route is not None:
            route(self, ex, path)
            return
        m = _LEASE_PATH.match(path)
        if not m or self.command not in ("POST", "DELETE"):
            raise Refused(404, f"no such broker route: {self.command} {path}")
        body = self._node(ex, path)
        job_id = int(m.group(1))
        who["job"] = job_id
        CURRENT_JOB.set(job_id)  # this request's thread: its log lines name the job
        if self.command == "DELETE":
            self._release(ex, job_id, who)
        else:
            self._acquire(ex, job_id, body, who)

    def _health(self, ex: Exchange, path: str) -> None:
        # 503 when the broker cannot keep what it grants: a load balancer's health check
        # (docs/operations.md) then sends nodes and jobs to another broker
        journal = self.service.journal
        try:
            journal.check()
            active = len(journal.active())
        except (JournalError, *journal.errors) as exc:  # type: ignore[misc]
            if self.service.unhealthy != str(exc):  # once per cause, not every check
                log.error("health check fails: %s", exc)
            self.service.unhealthy = str(exc)
            ex.send(503, json.dumps({"status": "unavailable", "reason": str(exc)}).encode())
            return
        if self.service.unhealthy is not None:
            log.info("health check passes again (it failed: %s)", self.service.unhealthy)
            self.service.unhealthy = None
        ex.send(200, json.dumps({"status": "ok", "active_leases": active}).encode())

    def _metrics(self, ex: Exchange, path: str) -> None:
        ex.send(200, self.service.metrics.render().encode(),
                content_type="text/plain; version=0.0.4; charset=utf-8")

    def _status(self, ex: Exchange, path: str) -> None:
        # job ids and QPU errors: for the cluster's users (MUNGE, any uid), not for anyone
        # who reaches the port
        self._node(ex, path, any_uid=True)
        ex.send(200, json.dumps(self.service.status()).encode())

    def _catalog(self, ex: Exchange, path: str) -> None:
        config = self.service.config.get()
        ex.send(200, json.dumps({r.name: r.current_type for r in config.resources}).encode())

    def _leases(self, ex: Exchange, path: str) -> None:
        self._node(ex, path)
        ex.send(200, json.dumps([lease_json(self.service, lease, with_env=False)
                                 for lease in self.service.journal.active()]).encode())

    def _release(self, ex: Exchange, job_id: int, who: dict[str, Any]) -> None:
        asked = time.time()
        lease = self.service.release(job_id)
        if lease is None:
            raise Refused(404, f"job {job_id} has no lease")
        who["user"] = lease.user or "-"
        answer = lease_json(self.service, lease, with_env=False, with_usage=True)
        # this call released it (not an earlier epilog): a het job's components each ask,
        # the one told so writes the usage record
        answer["released_now"] = lease.released_at is not None and lease.released_at >= asked
        ex.send(200, json.dumps(answer).encode())

    def _acquire(self, ex: Exchange, job_id: int, body: bytes, who: dict[str, Any]) -> None:
        try:
            data = json.loads(body or b"{}")
            component = data.get("component")
            request = AcquireRequest(
                job_id, user=data.get("user"), uid=data.get("uid"),
                qpus=str(data.get("qpus") or ""), time_limit=data.get("time_limit"),
                overrides=data.get("overrides"),
                component=int(component) if component is not None else None)
        except (ValueError, AttributeError, TypeError):
            raise Refused(400, "lease request is not the expected JSON") from None
        who["user"] = request.user or "-"
        outcome = self.service.acquire(request)
        answer = lease_json(self.service, outcome.lease, with_env=outcome.error is None,
                            names=outcome.names)
        if outcome.error is not None:  # this het component's QPUs; the lease stands
            answer.update(state="failed", error=outcome.error, env={})
        answer["warnings"] = outcome.warnings
        ex.send(200, json.dumps(answer).encode())


# The fixed routes (method, path) -> handler; /v1/leases/<job> is matched after them.
ROUTES: dict[tuple[str, str], Callable[[NodeApi, Exchange, str], None]] = {
    ("GET", "/v1/health"): NodeApi._health,
    ("GET", "/metrics"): NodeApi._metrics,
    ("GET", "/v1/status"): NodeApi._status,
    ("GET", "/v1/catalog"): NodeApi._catalog,
    ("GET", "/v1/leases"): NodeApi._leases,
}


def lease_json(service: LeaseService, lease: LeaseRecord, *, with_env: bool,
               with_usage: bool = False, names: list[str] | None = None) -> dict[str, Any]:
    """A lease as the node API answers it: with the job's environment for the prolog
    (``names``: a het component's own QPUs, in its order), with the usage record for the
    epilog (which writes it into Slurm accounting)."""
    out: dict[str, Any] = {
        "job_id": lease.job_id, "generation": lease.gen, "state": lease.state.value,
        "user": lease.user, "uid": lease.uid, "qpus": lease.names,
        # masked again: a journal written before the broker masked what it stores
        "error": service.redact(lease.error) if lease.error else lease.error,
        "created_at": lease.created_at, "expires_at": lease.expires_at,
        "released_at": lease.released_at,
        "release_errors": [service.redact(e) for e in lease.release_errors],
        "resources": [{"name": h.name, "type": h.type, "token": h.token} for h in lease.held
                      if names is None or h.name in names],
    }
    if names is not None:
        out["qpus"] = list(names)
    if with_env:
        out["env"] = service.environment(lease, names)
    if with_usage:
        # vars(), not asdict(): every field is a plain value, and asdict's recursive
        # deep copy was a third of the time it took to build this answer
        out["usage"] = [{**vars(u), "session_seconds": u.session_seconds}
                        for u in service.journal.usage(lease)]
    return out
