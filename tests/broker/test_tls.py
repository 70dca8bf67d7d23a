"""The broker over TLS (--tls-cert, --tls-key): nodes verify it with the site's CA
(broker_ca= on the plugstack line) and acquire over https, jobs get https endpoints that
their SDKs (requests, httpx, qrmi's rustls) verify with the CA bundle the node gives them,
and what does not speak TLS, or never finishes its handshake, costs the broker nothing."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import (
    BrokerUnderTest,
    StartBroker,
    fake_credential,
    set_job_environment,
    sim_resources,
    wait_for,
)

from slurm_qpu.broker.client import BrokerClient, BrokerError
from slurm_qpu.broker.limits import Limits
from slurm_qpu.broker.tls import ServerTLS, TLSError
from slurm_qpu.jobenv.contract import ca_bundle_env
from slurm_qpu_emulator import Emulator
from slurm_qpu_lab.certificates import Certificates, make


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make(tmp_path_factory.mktemp("tls"))


def tls_broker(start_broker: StartBroker, resources: list[dict[str, Any]],
               certs: Certificates, **kw: Any) -> BrokerUnderTest:
    return start_broker(resources, tls=ServerTLS(certs.cert, certs.key), ca_file=str(certs.ca),
                        **kw)


def test_a_node_verifies_the_broker_with_the_sites_ca_and_leases_over_https(
        start_broker: StartBroker, certs: Certificates, tmp_path: Path) -> None:
    b = tls_broker(start_broker, sim_resources(tmp_path / "ledger"), certs)
    assert b.url.startswith("https://127.0.0.1:")
    lease = b.acquire(3, "sim_a")
    assert lease["state"] == "acquired", lease
    assert b.node().release(3)["state"] == "released"
    # without the site's CA the node refuses the broker (it could be anyone), at once:
    # asking again would not change the certificate
    b.ca_file = None
    pauses: list[float] = []  # a retry would pause first
    node = BrokerClient(b.url, deadline=2.0, sleep=pauses.append,
                        encode=lambda payload: fake_credential(payload))
    with pytest.raises(BrokerError) as refused:
        node.acquire(4, qpus="sim_a", user="alice", uid=1000, time_limit=3600)
    assert pauses == []
    assert str(refused.value).startswith(f"cannot verify the slurm-qpu broker at {b.url}: ")
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    assert "is its CA in the system's trust store (or name the CA bundle with broker_ca=" \
        in str(refused.value)
    assert b.service.journal.current(4) is None  # nothing was sent
    # a broker_ca= that names no file says so
    b.ca_file = str(tmp_path / "missing.pem")
    with pytest.raises(BrokerError, match=r"^broker_ca=.*missing\.pem: cannot load the CA "
                                          r"bundle: No such file or directory$"):
        b.acquire(4, "sim_a")


def test_jobs_get_https_endpoints_their_sdks_verify_with_the_ca_bundle_they_are_given(
        emulator: Emulator, start_broker: StartBroker, certs: Certificates,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("qiskit_ibm_runtime")
    from qiskit import QuantumCircuit
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_ibm_runtime import SamplerV2

    from slurm_qpu import client

    warnings.simplefilter("ignore", DeprecationWarning)
    monkeypatch.delenv("IAM_URL", raising=False)
    b = tls_broker(start_broker, emulator.qrmi_config()["resources"], certs)
    env = b.acquire(7, "ibm_manila")["env"]
    assert env["ibm_manila_QRMI_IBM_QCS_ENDPOINT"].startswith(b.url + "/p/")
    assert env["ibm_manila_QRMI_IBM_QCS_IAM_ENDPOINT"].startswith("https://")
    # what the prolog adds as the job's defaults with broker_ca= (requests, then the rest)
    set_job_environment(monkeypatch, {**env, **ca_bundle_env(str(certs.ca))})
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    backend = client.ibm_backend()
    isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(circuit)
    job = SamplerV2(mode=client.ibm_session()).run([isa], shots=50)
    assert sum(job.result()[0].data.meas.get_counts().values()) == 50
    # httpx honours SSL_CERT_FILE: a job's own httpx call verifies the broker too
    token = env["ibm_manila_QRMI_IBM_QCS_IAM_APIKEY"]
    answer = httpx.post(f"{b.url}/p/ibm_manila/identity/token",
                        data={"grant_type": "urn:ibm:params:oauth:grant-type:apikey",
                              "apikey": token})
    assert answer.status_code == 200
    # without the bundle the SDK's client refuses the broker's certificate
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{b.url}/v1/health")


def test_the_qrmi_wheel_verifies_the_broker_with_ssl_cert_file(
        emulator: Emulator, start_broker: StartBroker, certs: Certificates,
        monkeypatch: pytest.MonkeyPatch) -> None:
    qrmi = pytest.importorskip("qrmi")
    b = tls_broker(start_broker, emulator.qrmi_config()["resources"], certs)
    env = b.acquire(8, "ibm_manila")["env"]
    set_job_environment(monkeypatch, {**env, **ca_bundle_env(str(certs.ca))})
    resource = qrmi.QuantumResource("ibm_manila", qrmi.ResourceType.IBMQuantumComputeService)
    assert resource.status().to_dict()["status"] == "online"  # over https, verified
    monkeypatch.delenv("SSL_CERT_FILE")  # the system's roots: the site's CA is not there
    again = qrmi.QuantumResource("ibm_manila", qrmi.ResourceType.IBMQuantumComputeService)
    with pytest.raises(Exception, match="error sending request"):  # UnknownIssuer
        again.status()


def test_plain_http_to_the_tls_port_is_closed_and_the_broker_serves_on(
        start_broker: StartBroker, certs: Certificates, tmp_path: Path) -> None:
    b = tls_broker(start_broker, sim_resources(tmp_path / "ledger"), certs)
    host, port = b.url.removeprefix("https://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: b\r\n\r\n")
        assert b"HTTP/1." not in read_until_closed(sock)  # never answered in the clear
    verify = ssl.create_default_context(cafile=str(certs.ca))
    assert httpx.get(f"{b.url}/v1/health", verify=verify).json()["status"] == "ok"


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_a_client_that_never_finishes_its_handshake_is_cut_off(
        start_broker: StartBroker, certs: Certificates, tmp_path: Path) -> None:
    limits = Limits(header_seconds=0.5, idle_seconds=0.5)
    b = tls_broker(start_broker, sim_resources(tmp_path / "ledger"), certs, limits=limits)
    host, port = b.url.removeprefix("https://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        # the broker closes it (after header_seconds; the socket's own timeout, well
        # above that, would raise instead)
        assert read_until_closed(sock) == b""
    assert b.broker._server is not None
    assert wait_for(lambda: b.broker._server.open_connections() == 0)  # type: ignore[union-attr]


def _served_serial(url: str, ca: Path) -> int:
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        cert = tls.getpeercert()
    assert cert is not None
    return int(str(cert["serialNumber"]), 16)


def test_a_renewed_certificate_is_served_to_new_connections_without_a_restart(
        start_broker: StartBroker, certs: Certificates, tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    for path in (certs.cert, certs.key):
        shutil.copy2(path, live / path.name)
    tls = ServerTLS(live / certs.cert.name, live / certs.key.name)
    b = start_broker(sim_resources(tmp_path / "ledger"), tls=tls, ca_file=str(certs.ca))
    before = _served_serial(b.url, certs.ca)
    assert tls.refresh() is False  # unchanged: nothing loaded
    renewed = make(certs.ca.parent, prefix="renewed")
    shutil.copyfile(renewed.cert, live / certs.cert.name)
    shutil.copyfile(renewed.key, live / certs.key.name)
    future = time.time() + 5
    os.utime(live / certs.cert.name, (future, future))
    assert tls.refresh() is True
    assert _served_serial(b.url, certs.ca) != before
    served = _served_serial(b.url, certs.ca)
    # a renewal caught half-written, its certificate first (then its key alone): the pair
    # in use goes on serving, untouched
    third = make(certs.ca.parent, prefix="third")
    shutil.copyfile(third.cert, live / certs.cert.name)
    os.utime(live / certs.cert.name, (future + 5, future + 5))
    assert tls.refresh() is False
    assert _served_serial(b.url, certs.ca) == served
    shutil.copyfile(certs.key, live / certs.key.name)
    os.utime(live / certs.key.name, (future + 10, future + 10))
    assert tls.refresh() is False
    assert _served_serial(b.url, certs.ca) == served
    assert b.acquire(5, "sim_a")["state"] == "acquired"
    # and once the pair is whole again it is loaded
    shutil.copyfile(third.key, live / certs.key.name)
    os.utime(live / certs.key.name, (future + 15, future + 15))
    assert tls.refresh() is True
    assert _served_serial(b.url, certs.ca) != served


def test_a_key_others_can_read_or_a_mismatched_pair_is_refused_with_the_reason(
        certs: Certificates, tmp_path: Path) -> None:
    open_key = tmp_path / "open.key"
    shutil.copyfile(certs.key, open_key)
    open_key.chmod(0o644)
    with pytest.raises(TLSError, match=r"readable or writable by others \(mode 644\); run: "
                                       r"chmod o-rwx"):
        ServerTLS(certs.cert, open_key)
    with pytest.raises(TLSError, match=r"cannot use the certificate .* with the key"):
        ServerTLS(certs.ca, certs.key)
    with pytest.raises(TLSError, match=r"cannot read .*missing\.pem: No such file"):
        ServerTLS(tmp_path / "missing.pem", certs.key)


def test_the_prolog_gives_the_job_the_ca_bundle_as_defaults_it_may_override(
        start_broker: StartBroker, certs: Certificates, tmp_path: Path) -> None:
    from slurm_qpu.lease import from_broker
    from slurm_qpu.lease.store import LeaseState, LeaseStore
    from slurm_qpu.settings import parse_args
    from slurm_qpu.slurm.job import JobFacts

    b = tls_broker(start_broker, sim_resources(tmp_path / "ledger"), certs)
    settings = parse_args([f"broker={b.url}", f"broker_ca={certs.ca}"])
    assert settings.broker_ca == str(certs.ca)
    b.jobs.ids.add(11)
    store = LeaseStore(tmp_path / "state")
    client = b.node()
    lease = from_broker.run_prolog(JobFacts(11, "n1", ("n1",), 1000, "alice"), "sim_a", store,
                                   client, job_defaults=ca_bundle_env(settings.broker_ca))
    assert lease.state is LeaseState.ACQUIRED
    stored = store.load(11)
    assert stored is not None
    assert stored.env_defaults == {"SSL_CERT_FILE": str(certs.ca),
                                   "REQUESTS_CA_BUNDLE": str(certs.ca)}
    assert "SSL_CERT_FILE" not in stored.env  # forced are only the broker's own variables
    assert ca_bundle_env(None) == {}


def test_a_broken_tls_record_ends_its_connection_without_a_traceback(
        start_broker: StartBroker, certs: Certificates, tmp_path: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    b = tls_broker(start_broker, sim_resources(tmp_path / "ledger"), certs)
    host, port = b.url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(certs.ca))
    raw = socket.create_connection((host, int(port)), timeout=5)
    tls = context.wrap_socket(raw, server_hostname=host)
    # a record whose header says application data and whose content is not one
    socket.socket.sendall(tls, b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
    with contextlib.suppress(OSError):  # closed, one way or the other (ssl.SSLError)
        assert tls.recv(4096) == b""
    tls.close()
    assert wait_for(lambda: b.broker._server.open_connections() == 0)  # type: ignore[union-attr]
    verify = ssl.create_default_context(cafile=str(certs.ca))
    assert httpx.get(f"{b.url}/v1/health", verify=verify).status_code == 200
    assert "Traceback" not in capfd.readouterr().err
