"""Job tokens: what a job holds instead of a vendor credential.

``sqpu_<job>_<gen>_<mac>``: random per lease (the MAC covers a random salt kept in the
journal), bound to the job, its lease generation and so to its user and QPUs, checked
without a table scan, and dead as soon as the lease is released or expires. The SDKs that
insist on a JWT for a bearer token (qiskit-ibm-runtime) get an access token from the
broker's IAM answer: a JWT signed with the same key, naming the same lease.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from slurm_qpu import jwt
from slurm_qpu.broker.journal import LeaseRecord

TOKEN = re.compile(r"^sqpu_([0-9]{1,12})_([0-9]{1,9})_([A-Za-z0-9_-]{43})$")
ACCESS_LIFETIME = 3600
MAX_VERIFIED = 4096  # access tokens remembered as verified (a few per running job)


@dataclass(frozen=True)
class TokenRef:
    job_id: int
    gen: int


class TokenBook:
    def __init__(self, key: bytes) -> None:
        self.key = key
        # access tokens already verified, with their expiry: an SDK sends the same one
        # with every request, and checking it (HMAC, base64, JSON) twice per proxied
        # request was a tenth of the broker's CPU (BENCHMARKS.md, item 4). Keyed by the
        # whole token, signature included, so a hit says what verifying it again would
        self._verified: dict[str, tuple[TokenRef, float]] = {}

    def _mac(self, job_id: int, gen: int, salt: str) -> str:
        digest = hmac.new(self.key, f"job-token:{job_id}:{gen}:{salt}".encode(),
                          hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def job_token(self, lease: LeaseRecord) -> str:
        return f"sqpu_{lease.job_id}_{lease.gen}_{self._mac(lease.job_id, lease.gen, lease.salt)}"

    def parse(self, token: str | None) -> TokenRef | None:
        """Which lease a token claims to belong to (checked by ``matches``)."""
        if not token:
            return None
        m = TOKEN.match(token)
        if m:
            return TokenRef(int(m.group(1)), int(m.group(2)))
        now = time.time()
        hit = self._verified.get(token)
        if hit is not None:
            return hit[0] if hit[1] > now else None
        claims = jwt.verify(self.key, token, now)
        if claims and isinstance(claims.get("job"), int) and isinstance(claims.get("gen"), int):
            ref = TokenRef(claims["job"], claims["gen"])
            if len(self._verified) >= MAX_VERIFIED:
                self._verified.clear()  # old tokens go; live ones are verified again
            self._verified[token] = (ref, float(claims["exp"]))
            return ref
        return None

    def matches(self, token: str, lease: LeaseRecord) -> bool:
        if TOKEN.match(token):
            return hmac.compare_digest(token, self.job_token(lease))
        return self.parse(token) == TokenRef(lease.job_id, lease.gen)  # signature checked

    def access_token(self, lease: LeaseRecord, now: float | None = None) -> tuple[str, int]:
        """A JWT for the IAM answer, and its lifetime in seconds (never past the lease)."""
        now = int(time.time() if now is None else now)
        end = int(lease.expires_at) if lease.expires_at else now + ACCESS_LIFETIME
        life = max(1, min(ACCESS_LIFETIME, end - now))
        return jwt.sign(self.key, {"iat": now, "exp": now + life, "sub": f"job:{lease.job_id}",
                                   "job": lease.job_id, "gen": lease.gen}), life
