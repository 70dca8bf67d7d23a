"""The broker's TLS: the certificate and key it serves (``--tls-cert``, ``--tls-key`` in
/etc/default/slurm-qpu-broker), loaded at start and again whenever either file changes,
so that a renewed certificate reaches new connections without a restart (connections
already open keep the one they began with).

The key is a secret like the QPU credentials: a key file others may read is refused. Its
owner may be the broker's user or root with the broker's group (Debian's ssl-cert
convention), so it is the mode that is checked, not the owner.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
import threading
from pathlib import Path

log = logging.getLogger("slurm_qpu.broker")


class TLSError(Exception):
    """The certificate or key cannot be used; the text says which and why."""


class ServerTLS:
    """The server context (TLS 1.2 at least) holding the certificate chain and key. A
    renewal is loaded into a new context, put in place only once the pair loaded: the one
    in use is never changed under a handshake, nor left half-loaded."""

    def __init__(self, cert: Path | str, key: Path | str) -> None:
        self.cert, self.key = Path(cert), Path(key)
        self._lock = threading.Lock()
        self._stamp = self._stamps()
        self._context = self._load()

    @property
    def context(self) -> ssl.SSLContext:
        """The context new connections are wrapped with (the latest that loaded)."""
        return self._context

    def _stamps(self) -> tuple[float, float]:
        try:
            return self.cert.stat().st_mtime, self.key.stat().st_mtime
        except OSError as exc:
            raise TLSError(f"cannot read {exc.filename}: {exc.strerror}") from None

    def _load(self) -> ssl.SSLContext:
        check_key_file(self.key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert, self.key)
        except ssl.SSLError as exc:
            raise TLSError(f"cannot use the certificate {self.cert} with the key {self.key}: "
                           f"{exc.reason or exc} (a PEM certificate chain, leaf first, and "
                           "its unencrypted PEM key)") from None
        except OSError as exc:
            raise TLSError(f"cannot read {exc.filename or self.cert}: {exc.strerror}") from None
        return context

    def refresh(self) -> bool:
        """Load the files again if either changed since; whether a new pair is in use. A
        pair that cannot be used (a renewal half-written) is logged and the one in use
        kept; it is tried again at the next change."""
        with self._lock:
            try:
                stamp = self._stamps()
                if stamp == self._stamp:
                    return False
                self._stamp = stamp
                self._context = self._load()
            except TLSError as exc:
                log.error("TLS: keeping the certificate in use: %s", exc)
                return False
        log.info("TLS: loaded the renewed certificate %s", self.cert)
        return True


def check_key_file(path: Path) -> None:
    """A private key others can read is not private: refuse it."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as exc:
        raise TLSError(f"cannot read the TLS key {path}: {exc.strerror}") from None
    if mode & stat.S_IRWXO:
        raise TLSError(f"the TLS key {path} is readable or writable by others (mode "
                       f"{mode:o}); run: chmod o-rwx {path}")
