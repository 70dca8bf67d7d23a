"""HS256 JSON Web Tokens, standard library only.

Used where an SDK insists on decoding its bearer token as a JWT (qiskit-ibm-runtime reads
``iat``/``exp`` from the IAM access token without checking its signature): the emulator's
vendor tokens and the broker's job access tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, signing_input: str) -> str:
    return b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())


def sign(key: bytes, payload: dict[str, Any]) -> str:
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{head}.{body}.{_mac(key, f'{head}.{body}')}"


def verify(key: bytes, token: str | None, now: float) -> dict[str, Any] | None:
    """The claims of a token signed with ``key`` whose ``exp`` is still ahead; else None."""
    if not token or token.count(".") != 2:
        return None
    head, body, sig = token.split(".")
    if not hmac.compare_digest(_mac(key, f"{head}.{body}"), sig):
        return None
    try:
        payload = json.loads(unb64(body))
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    exp = payload.get("exp")
    if not isinstance(exp, int | float) or exp <= now:
        return None
    return payload
