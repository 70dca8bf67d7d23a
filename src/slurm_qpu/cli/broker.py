"""``slurm-qpu broker``: run the credential broker (normally from its systemd unit)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slurm_qpu.settings import DEFAULT_CONFIG

if TYPE_CHECKING:
    from slurm_qpu.broker.tls import ServerTLS
    from slurm_qpu.redact import SecretSource

DEFAULT_JOURNAL = "/var/lib/slurm-qpu-broker/journal.sqlite"
DEFAULT_PORT = 8291
TLS_CHECK_SECONDS = 60  # how often the certificate and key files are checked for a renewal

DESCRIPTION = """\
Hold the QPU credentials of qrmi_config.json, acquire and release QPUs for jobs (asked by
the plugin's prolog and epilog, authenticated with MUNGE) and proxy the jobs' vendor API
calls, adding the real authentication: jobs only ever see a token that dies with them.

Point the plugin at it with broker=URL on the plugstack.conf line, on every node.
The config must be readable by the broker's user only (chmod 600): the broker refuses
to start otherwise."""


def add_parser(sub: Any) -> None:
    from slurm_qpu.broker.limits import Limits

    defaults = Limits()
    p = sub.add_parser("broker", help="run the credential broker and proxy (admins)",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH",
                   help="the QPU configuration with credentials (default %(default)s)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help="port (default %(default)s)")
    p.add_argument("--public-url", metavar="URL",
                   help="the broker's URL as jobs on compute nodes reach it; jobs get "
                        "proxy endpoints under it (default http[s]://<this host's "
                        "FQDN>:PORT)")
    p.add_argument("--tls-cert", metavar="PATH",
                   help="serve HTTPS with this PEM certificate chain (leaf first); with "
                        "--tls-key. Nodes then name https://... in broker=, and jobs get "
                        "https endpoints. A renewed file is loaded without a restart")
    p.add_argument("--tls-key", metavar="PATH",
                   help="the certificate's unencrypted PEM key; others may not read it")
    p.add_argument("--journal", default=DEFAULT_JOURNAL, metavar="PATH|URL",
                   help="the journal of leases: a SQLite file (default %(default)s), or a "
                        "MariaDB/MySQL database, mysql://USER@HOST[:PORT]/DATABASE"
                        "[?password_file=PATH] (the server slurmdbd uses may hold it; "
                        "several brokers may share one database and serve at once)")
    p.add_argument("--journal-sync", choices=("full", "normal"), default="full",
                   help="SQLite synchronous mode: full survives power loss (default; "
                        "MariaDB commits durably with InnoDB's defaults)")
    p.add_argument("--audit-log", metavar="PATH",
                   help="one line per job request here (default: the broker's log)")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"),
                   help="how much the broker logs (default info)")
    p.add_argument("--log-format", default="text", choices=("text", "json"),
                   help="json: one JSON object per line, with the job id of the request "
                        "on every line (default %(default)s)")
    p.add_argument("--reap-interval", type=float, default=60.0, metavar="S",
                   help="how often to release the leases of jobs Slurm no longer runs "
                        "(default %(default)s s)")
    p.add_argument("--status-interval", type=float, default=60.0, metavar="S",
                   help="how often to ask the vendors for each QPU's status; 0: never "
                        "(default %(default)s s)")
    p.add_argument("--hold-unavailable", action=argparse.BooleanOptionalAction, default=True,
                   help="while a vendor reports a QPU unavailable, hold new jobs for it "
                        "PENDING with a Slurm reservation of its licenses (needs the broker's "
                        "user as Slurm operator; default: on)")
    p.add_argument("--scontrol", default="scontrol", metavar="PATH",
                   help="scontrol command for the reservations (default %(default)s)")
    p.add_argument("--squeue", default="squeue", metavar="PATH",
                   help="squeue command the reaper runs (default %(default)s)")
    p.add_argument("--max-body", type=int, default=defaults.max_body, metavar="BYTES",
                   help="largest request or answer body a job may move (default 64 MiB)")
    p.add_argument("--rate-limit", type=float, default=defaults.rate, metavar="N",
                   help="requests per second per job (default %(default)s)")
    p.add_argument("--burst", type=int, default=defaults.burst, metavar="N",
                   help="requests a job may make at once above its rate (default %(default)s)")
    limits = p.add_argument_group(
        "what one client may cost the broker",
        "Bounds that keep a job, or any client reaching the port, from making the broker "
        "slow, big or dead for the others (docs/security.md)")
    limits.add_argument("--max-checked-body", type=int, default=defaults.max_parsed,
                        metavar="BYTES", help="largest job creation request (a body the "
                        "broker reads and checks, after gzip) (default 8 MiB)")
    limits.add_argument("--max-buffered", type=int, default=defaults.buffered,
                        metavar="BYTES", help="bytes the broker holds in memory for all "
                        "requests at once (bodies, parsed JSON counted at what parsing "
                        "costs); past it: 503 and Retry-After (default 256 MiB)")
    limits.add_argument("--max-buffered-share", type=int, default=defaults.buffered_share,
                        metavar="BYTES", help="of those, what one job (or one address, until "
                        "a request proves its job) may hold; a body without Content-Length "
                        "is limited to half of it (default 64 MiB)")
    limits.add_argument("--max-in-flight", type=int, default=defaults.in_flight, metavar="N",
                        help="requests of one job served at once (default %(default)s)")
    limits.add_argument("--max-connections", type=int, default=defaults.connections, metavar="N",
                        help="connections open at once; keep well below the unit's "
                        "LimitNOFILE (default %(default)s)")
    limits.add_argument("--max-connections-per-client", type=int,
                        default=defaults.per_client, metavar="N",
                        help="connections open at once from one address (default "
                        "%(default)s)")
    limits.add_argument("--idle-timeout", type=float, default=defaults.idle_seconds, metavar="S",
                        help="seconds a connection may wait for its next request, and any "
                        "read or write may wait (default %(default)s)")
    limits.add_argument("--header-timeout", type=float, default=defaults.header_seconds,
                        metavar="S",
                        help="seconds a request line and headers may take to arrive "
                        "(default %(default)s)")
    limits.add_argument("--body-timeout", type=float, default=defaults.body_seconds, metavar="S",
                        help="seconds a request body may take to arrive (default "
                        "%(default)s)")
    limits.add_argument("--auth-failures", type=float, default=defaults.auth_failures, metavar="N",
                        help="failed authentications per second one address may sustain "
                        "before it must wait (default %(default)s)")
    limits.add_argument("--auth-failures-burst", type=int, default=defaults.auth_burst, metavar="N",
                        help="failed authentications one address may have at once "
                        "(default %(default)s)")
    limits.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDRESS",
                        help="the address (or network) of a load balancer in front (HAProxy "
                        "with option "
                        "forwardfor): its connections are not capped per address, and its "
                        "requests count as the client's that X-Forwarded-For names last; "
                        "repeatable (default: none, X-Forwarded-For is ignored)")
    p.add_argument("--drain-timeout", type=float, default=30.0, metavar="S",
                   help="on SIGTERM, how long requests in progress (a prolog's acquisition, "
                        "a job's vendor call) may take to finish before they are cut; keep "
                        "it below the unit's TimeoutStopSec (default %(default)s s)")
    p.add_argument("--node-uid", type=int, action="append", default=[], metavar="UID",
                   help="uid besides root that may acquire and release (the SlurmUser, if "
                        "prologs run as it); repeatable")
    p.add_argument("--insecure-permissions", action="store_true",
                   help="start even if the config is readable by others (tests only)")
    p.set_defaults(func=main)


class StartupError(Exception):
    pass


def trusted_proxies(values: list[str]) -> frozenset[str]:
    """--trusted-proxy values as networks (an address is a network of one)."""
    import ipaddress

    out = set()
    for value in values:
        try:
            out.add(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise StartupError(f"--trusted-proxy {value}: not an address or a network "
                               "(e.g. 10.0.0.5 or 10.0.0.0/29)") from None
    return frozenset(out)


def server_tls(cert: str | None, key: str | None) -> ServerTLS | None:
    """--tls-cert and --tls-key: both or neither."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise StartupError("--tls-cert and --tls-key go together: the certificate and its "
                           "key")
    from slurm_qpu.broker.tls import ServerTLS

    return ServerTLS(cert, key)


def check_secret_file(path: Path) -> None:
    """The config holds every vendor credential: only the broker's user may read it."""
    try:
        st = path.stat()
    except OSError as exc:
        raise StartupError(f"cannot read the QPU config {path}: {exc.strerror}") from None
    if st.st_uid != os.geteuid():
        raise StartupError(f"{path} belongs to uid {st.st_uid}, not to the broker's user "
                           f"(uid {os.geteuid()}); chown it to the broker's user")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StartupError(f"{path} is readable or writable by others (mode "
                           f"{stat.S_IMODE(st.st_mode):o}) and holds QPU credentials; "
                           f"run: chmod 600 {path}")


def _prepare_journal_dir(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = stat.S_IMODE(path.parent.stat().st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and path.parent != Path("/tmp"):
        os.chmod(path.parent, mode & 0o700)


def _logging(level: str, audit_log: str | None, secrets: SecretSource,
             log_format: str = "text") -> None:
    """The broker's log (and audit log) handlers, masking in each line the secrets
    ``secrets`` (the ConfigSource) knows at that time: those of QPUs a reload added too."""
    from slurm_qpu.log import JsonFormatter
    from slurm_qpu.redact import Redactor, install

    redactor = Redactor(source=secrets)
    fmt = JsonFormatter("broker") if log_format == "json" else \
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    install(handler, redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    for noisy in ("httpx", "httpcore"):  # request lines with URLs: the audit log has them
        logging.getLogger(noisy).setLevel(logging.WARNING)
    audit = logging.getLogger("slurm_qpu.audit")
    audit.setLevel(logging.INFO)
    if audit_log:
        fh = logging.FileHandler(audit_log)
        os.chmod(audit_log, 0o600)
        fh.setFormatter(fmt)
        install(fh, redactor)
        audit.addHandler(fh)
        audit.propagate = False


def main(args: argparse.Namespace) -> int:
    from slurm_qpu.broker.availability import Availability, Reservations
    from slurm_qpu.broker.database import is_url
    from slurm_qpu.broker.journal import Journal, JournalError
    from slurm_qpu.broker.limits import Limits
    from slurm_qpu.broker.server import Broker
    from slurm_qpu.broker.service import ConfigSource, LeaseService
    from slurm_qpu.broker.tls import TLSError
    from slurm_qpu.config import ConfigError
    from slurm_qpu.slurm.commands import Scontrol, Squeue

    prog = "slurm-qpu broker"
    config_path = Path(args.config)
    try:
        if not args.insecure_permissions:
            check_secret_file(config_path)
        config = ConfigSource(config_path)
        resources = config.get().resources
        _logging(args.log_level, args.audit_log, config, args.log_format)
        trusted = trusted_proxies(args.trusted_proxy)
        tls = server_tls(args.tls_cert, args.tls_key)
        journal_path = args.journal
        if not is_url(journal_path):
            _prepare_journal_dir(Path(journal_path))
        journal = Journal(journal_path, synchronous=args.journal_sync.upper())
    except (StartupError, JournalError, TLSError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    log = logging.getLogger("slurm_qpu.broker")
    scheme = "https" if tls else "http"
    public = (args.public_url or f"{scheme}://{socket.getfqdn()}:{args.port}").rstrip("/")
    if tls and not public.startswith("https://"):
        log.warning("--public-url %s is not https: jobs will be given endpoints that do not "
                    "reach this broker's TLS port", public)
    service = LeaseService(journal, config, public_url=public, squeue=Squeue(args.squeue),
                           licenses=Scontrol(args.scontrol).licenses)
    service.recover()
    broker = Broker(service, Limits(
        max_body=args.max_body, rate=args.rate_limit, burst=args.burst,
        max_parsed=args.max_checked_body, buffered=args.max_buffered,
        buffered_share=args.max_buffered_share,
        in_flight=args.max_in_flight, connections=args.max_connections,
        per_client=args.max_connections_per_client, idle_seconds=args.idle_timeout,
        header_seconds=args.header_timeout, body_seconds=args.body_timeout,
        auth_failures=args.auth_failures, auth_burst=args.auth_failures_burst,
        trusted_proxies=trusted),
                    node_uids=frozenset({0, *args.node_uid}))
    stop = threading.Event()

    def every(interval: float, what: str,
              work: Callable[[bool], object]) -> Callable[[], None]:
        """Run ``work(leading)`` every ``interval`` s; ``leading``: this broker holds
        ``what`` (journal.leads: one broker at a time per journal, another one taking
        over if it dies)."""
        def loop() -> None:
            leading: bool | None = None
            while not stop.is_set():
                try:
                    now = journal.leads(what)
                    if now != leading and (now or leading is not None):
                        log.info("%s: %s", what, "this broker leads it" if now else
                                 "another broker on the journal leads it")
                    leading = now
                    work(now)
                except Exception:
                    log.exception("%s pass failed", what)
                stop.wait(interval)
        return loop

    # the reaper on the leading broker only; the vendors' status on every broker (each
    # answers /v1/status), the Slurm holds that follow it from the leading one
    watchers: list[tuple[str, float, Callable[[bool], object]]] = [
        ("reaper", args.reap_interval, lambda leading: leading and service.reap())]
    if args.status_interval > 0:
        availability = service.availability = Availability(
            service.config.get, service.factory,
            Reservations(args.scontrol) if args.hold_unavailable else None)
        watchers.append(("availability", args.status_interval,
                         lambda leading: availability.check(follow=leading)))

    try:
        url = broker.start(args.host, args.port, tls=tls)
    except OSError as exc:
        print(f"{prog}: cannot listen on {args.host}:{args.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    for name, interval, work in watchers:
        threading.Thread(target=every(interval, name, work), name=name, daemon=True).start()
    if tls:
        def renewals() -> None:  # a renewed certificate, for the next connections
            while not stop.wait(TLS_CHECK_SECONDS):
                tls.refresh()
        threading.Thread(target=renewals, name="tls", daemon=True).start()
    log.info("listening at %s (jobs reach it as %s); %d QPU(s): %s; journal %s; %d active "
             "lease(s)", url, public, len(resources), ", ".join(r.name for r in resources),
             journal.path, len(journal.active()))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("stopping: no new connections; requests in progress have %g s to finish",
             args.drain_timeout)
    cut = broker.stop(drain=args.drain_timeout)
    if cut:
        log.warning("stopping: %d request(s) still in progress after %g s were cut (their "
                    "clients retry, or fail with the broker's address)", cut,
                    args.drain_timeout)
    journal.close()  # after the requests: none writes to it half-way
    log.info("stopped")
    return 0
