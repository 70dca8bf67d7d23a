"""Bearer tokens the emulator issues: HS256 JWTs with ``iat`` and ``exp``.

qiskit-ibm-runtime decodes the IAM access token as a JWT (without checking the signature)
and needs both claims; an opaque string breaks it. Pasqal's SDK reads ``exp`` too.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from slurm_qpu import jwt


@dataclass
class TokenIssuer:
    lifetime: int = 3600
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    clock: Callable[[], float] = time.time

    def issue(self, subject: str, lifetime: int | None = None, **claims: object) -> str:
        now = int(self.clock())
        return jwt.sign(self.key, {"iat": now, "exp": now + (lifetime or self.lifetime),
                                   "sub": subject, "jti": secrets.token_hex(8), **claims})

    def claims(self, token: str | None) -> dict[str, object] | None:
        """The claims of a valid, unexpired token; None otherwise."""
        return jwt.verify(self.key, token, int(self.clock()))

    def expire_all(self) -> None:
        """Make every token issued so far invalid (the 'expired token' fault)."""
        self.key = secrets.token_bytes(32)
