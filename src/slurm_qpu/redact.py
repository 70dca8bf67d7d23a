"""Keep secrets out of every log line, ours and the vendor SDKs'.

A ``logging.Filter`` on the handlers rewrites each record before it is formatted: every
configured secret value, and anything that looks like a bearer token or a slurm-qpu job
token, becomes ``***``. Installed by the broker on its handlers and by the plugin on the
Slurm handler, so a debug line that happens to print a header or a settings dict is safe.

The broker's secrets change while it runs (its config is re-read when the file changes):
its Redactor follows a ``source`` whose ``secrets`` is the set it currently knows, and
rebuilds its list only when that set is another object, so an unchanged config costs
each line one comparison.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Protocol

MASK = "***"
# keys whose values are credentials, whatever the vendor (QRMI spellings; S3's secret is
# AWS_SECRET_ACCESS_KEY, which ends in neither SECRET nor ACCESS_KEY_ID)
SECRET_KEY = re.compile(r"(APIKEY|API_KEY|SECRET|SECRET_ACCESS_KEY|SECRET_KEY|TOKEN|PASSWORD|"
                        r"ACCESS_KEY_ID|SERVICE_CRN)$")
PATTERNS = (
    re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"sqpu_[0-9]+_[0-9]+_[A-Za-z0-9_-]{16,}"),
    re.compile(r"(?i)(apikey|api_key|client_secret|password|access_token|refresh_token)"
               r"(['\"]?\s*[=:]\s*['\"]?)[^\s&'\",}]+"),
)


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY.search(key))


def secrets_of(environment: Mapping[str, str]) -> set[str]:
    """The values of a resource's settings that are credentials."""
    return {v for k, v in environment.items() if is_secret_key(k) and len(v) >= 4}


class SecretSource(Protocol):
    """Something that knows the secrets to mask now (the broker's ConfigSource): a new
    frozenset object whenever they change."""

    @property
    def secrets(self) -> frozenset[str]: ...


class Redactor:
    def __init__(self, secrets: Iterable[str] = (), source: SecretSource | None = None) -> None:
        self.source = source
        self._own: set[str] = set()
        self._seen: frozenset[str] | None = None
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        self._own.update(s for s in secrets if s)
        self._rebuild(self._seen or frozenset())

    def _rebuild(self, current: frozenset[str]) -> list[str]:
        # longest first, so a secret containing another is masked whole
        ordered = sorted(self._own | current, key=len, reverse=True)
        self.secrets = ordered  # before _seen: no thread sees the new set with the old list
        self._seen = current
        return ordered

    def current(self) -> list[str]:
        """The secrets to mask, following the source's."""
        secrets = self.secrets
        if self.source is not None:
            current = self.source.secrets
            if current is not self._seen:
                secrets = self._rebuild(current)
        return secrets

    def __call__(self, text: str) -> str:
        for secret in self.current():
            if secret in text:
                text = text.replace(secret, MASK)
        text = PATTERNS[0].sub(lambda m: f"{m.group(1)} {MASK}", text)
        text = PATTERNS[1].sub(MASK, text)
        return PATTERNS[2].sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


class RedactingFilter(logging.Filter):
    """Formats the record's message once, masked, so no handler sees the raw values."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the line
            message = str(record.msg)
        record.msg, record.args = self.redactor(message), None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
            record.msg += "\n" + self.redactor(text)
        return True


def install(handler: logging.Handler, redactor: Redactor) -> None:
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter(redactor))
