"""A site CA and a broker certificate it signed, made with the openssl command (Debian's),
for the tests and labs that run the broker over TLS: what a site's own CA would give its
broker hosts."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA certificate: what nodes and jobs verify the broker with
    cert: Path  # the broker's certificate (its chain: the leaf)
    key: Path  # its key, mode 0600


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make(directory: Path, names: tuple[str, ...] = ("localhost",),
         addresses: tuple[str, ...] = ("127.0.0.1",), days: int = 2,
         prefix: str = "broker") -> Certificates:
    """A new CA in ``directory`` (ca.pem) and ``prefix``.pem/.key for ``names`` and
    ``addresses`` (its subjectAltName), ECDSA P-256."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    if not ca.exists():
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", str(days),
                 "-subj", "/CN=slurm-qpu test site CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    cert, key, csr = (directory / f"{prefix}.pem", directory / f"{prefix}.key",
                      directory / f"{prefix}.csr")
    key.touch(mode=0o600)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={names[0]}")
    extensions = directory / f"{prefix}.ext"
    alt = ",".join([f"DNS:{n}" for n in names] + [f"IP:{a}" for a in addresses])
    extensions.write_text(f"subjectAltName={alt}\nbasicConstraints=critical,CA:FALSE\n"
                          "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                          "authorityKeyIdentifier=keyid\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", str(days),
             "-extfile", str(extensions))
    key.chmod(0o600)
    return Certificates(ca, cert, key)
