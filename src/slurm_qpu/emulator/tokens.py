"""Bearer tokens the emulator issues: HS256 JWTs with ``iat`` and ``exp``.

qiskit-ibm-runtime decodes the IAM access token as a JWT (without checking the signature)
and needs both claims; an opaque string breaks it. Pasqal's SDK reads ``exp`` too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class TokenIssuer:
    lifetime: int = 3600
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    clock: Callable[[], float] = time.time

    def issue(self, subject: str, lifetime: int | None = None, **claims: object) -> str:
        now = int(self.clock())
        payload = {"iat": now, "exp": now + (lifetime or self.lifetime), "sub": subject,
                   "jti": secrets.token_hex(8), **claims}
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64(json.dumps(payload).encode())
        sig = _b64(hmac.new(self.key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        return f"{head}.{body}.{sig}"

    def claims(self, token: str | None) -> dict[str, object] | None:
        """The claims of a valid, unexpired token; None otherwise."""
        if not token or token.count(".") != 2:
            return None
        head, body, sig = token.split(".")
        good = _b64(hmac.new(self.key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(good, sig):
            return None
        try:
            payload: dict[str, object] = json.loads(_unb64(body))
        except (ValueError, json.JSONDecodeError):
            return None
        exp = payload.get("exp")
        if not isinstance(exp, int) or exp <= int(self.clock()):
            return None
        return payload

    def expire_all(self) -> None:
        """Make every token issued so far invalid (the 'expired token' fault)."""
        self.key = secrets.token_bytes(32)
