"""The proxy's connections to the vendors (broker/upstream.py): kept alive and reused,
replaced when a vendor closed them, bounded by timeouts, through the environment's proxy;
and what a job sees when the vendor is slow, unreachable or answers compressed."""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from harness import StartBroker, bearer, wait_for, write_config

from slurm_qpu.broker.exchange import decoded_answer
from slurm_qpu.broker.httpserver import Refused
from slurm_qpu.broker.limits import Limits
from slurm_qpu.broker.upstream import Pool, UpstreamError, request_target
from slurm_qpu_emulator import Emulator, Fault

QPU = "ibm_manila"


@dataclass
class Vendor:
    """A plain HTTP/1.1 server that records what it saw."""

    server: ThreadingHTTPServer
    connections: list[tuple[str, int]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def vendor() -> Iterator[Vendor]:
    seen: Vendor

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 0.3  # an idle keep-alive connection is closed after this (as vendors do)

        def log_message(self, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            seen.connections.append(self.client_address)

        def do_GET(self) -> None:
            seen.lines.append(self.requestline)
            seen.headers.append({k.lower(): v for k, v in self.headers.items()})
            if self.path.startswith("/slow"):
                time.sleep(1.0)
            if self.path.startswith("/chunked") or self.path.endswith("/about"):
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for part in (b"ab", b"cde", b"f"):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
                return
            answer: dict[str, Any] = {"path": self.path}
            if self.path.endswith("/health"):  # IQM's health route: the acquire asks it
                answer["healthy"] = True
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            if self.path.startswith("/close"):
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        do_PUT = do_GET

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "42")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    seen = Vendor(server)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                     daemon=True).start()
    yield seen
    server.shutdown()
    server.server_close()


def get(pool: Pool, url: str) -> tuple[int, Any]:
    with pool.send("GET", url, {}) as answer:
        body = answer.read(1 << 20)
        return answer.status, json.loads(body or b"null")


def test_a_vendor_connection_is_kept_alive_between_requests(vendor: Vendor) -> None:
    pool = Pool()
    assert get(pool, f"{vendor.url}/a") == (200, {"path": "/a"})
    assert get(pool, f"{vendor.url}/b?x=1") == (200, {"path": "/b?x=1"})
    assert len(vendor.connections) == 1
    pool.close()


def test_a_streamed_answer_read_to_its_end_frees_the_connection(vendor: Vendor) -> None:
    pool = Pool()
    for _ in range(3):
        with pool.send("GET", f"{vendor.url}/s", {}) as answer:
            assert b"".join(answer.blocks(4)) == b'{"path": "/s"}'
    assert len(vendor.connections) == 1


def test_a_chunked_answer_is_streamed_and_frees_the_connection(vendor: Vendor) -> None:
    pool = Pool()
    for _ in range(2):
        with pool.send("GET", f"{vendor.url}/chunked", {}) as answer:
            assert answer.header("Transfer-Encoding") == "chunked"
            assert b"".join(answer.blocks()) == b"abcdef"
    assert len(vendor.connections) == 1


def test_an_answer_without_a_body_frees_the_connection(vendor: Vendor) -> None:
    pool = Pool()
    for _ in range(2):
        with pool.send("HEAD", f"{vendor.url}/h", {}) as answer:
            assert answer.status == 200 and b"".join(answer.blocks()) == b""
    assert len(vendor.connections) == 1


def test_an_answer_left_half_read_closes_its_connection(vendor: Vendor) -> None:
    pool = Pool()
    with pool.send("GET", f"{vendor.url}/a", {}) as answer:
        next(answer.blocks(4))  # the job went away after the first block
    get(pool, f"{vendor.url}/b")
    assert len(vendor.connections) == 2


def test_a_connection_the_vendor_closed_is_replaced(vendor: Vendor) -> None:
    pool = Pool()
    assert get(pool, f"{vendor.url}/close")[0] == 200  # the vendor said Connection: close
    assert get(pool, f"{vendor.url}/a")[0] == 200
    time.sleep(0.5)  # the vendor drops the idle connection
    assert get(pool, f"{vendor.url}/b")[0] == 200
    assert len(vendor.connections) == 3


def test_a_connection_idle_too_long_is_not_reused(vendor: Vendor) -> None:
    now = [0.0]
    pool = Pool(clock=lambda: now[0])
    get(pool, f"{vendor.url}/a")
    now[0] += 10  # past KEEPALIVE_EXPIRY
    get(pool, f"{vendor.url}/b")
    assert len(vendor.connections) == 2


def test_a_streamed_body_is_sent_with_its_length(vendor: Vendor) -> None:
    pool = Pool()
    with pool.send("PUT", f"{vendor.url}/up", {"Content-Length": "6"},
                   iter([b"abc", b"def"])) as answer:
        assert answer.status == 200
        answer.read(1000)
    assert vendor.headers[-1]["content-length"] == "6"


def test_a_slow_vendor_is_a_timeout_and_an_absent_one_a_connect_error(
        vendor: Vendor) -> None:
    pool = Pool(read_timeout=0.2)
    with pytest.raises(UpstreamError) as slow:
        pool.send("GET", f"{vendor.url}/slow", {})
    assert (str(slow.value), slow.value.timeout) == ("ReadTimeout", True)
    with pytest.raises(UpstreamError) as absent:
        pool.send("GET", "http://127.0.0.1:9/x", {})
    assert (str(absent.value), absent.value.timeout) == ("ConnectError", False)


def test_the_environments_http_proxy_gets_the_full_url_unless_bypassed(
        vendor: Vendor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", vendor.url)  # the recording server plays the proxy
    monkeypatch.setenv("no_proxy", "bypassed.example")
    pool = Pool()
    get(pool, "http://vendor.example:8080/api/x")
    assert vendor.lines[-1] == "GET http://vendor.example:8080/api/x HTTP/1.1"
    assert vendor.headers[-1]["host"] == "vendor.example:8080"
    with pytest.raises(UpstreamError):
        pool.send("GET", "http://bypassed.example:1/x", {})  # not through the proxy


def test_https_through_the_environments_proxy_is_tunnelled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    conn = Pool()._new(("https", "vendor.example", 443))
    assert (conn.host, conn.port) == ("proxy.example", 3128)
    assert (conn._tunnel_host, conn._tunnel_port) == ("vendor.example", 443)  # type: ignore[attr-defined]


def test_request_targets_go_out_as_the_bytes_the_job_sent() -> None:
    assert request_target("/api/v1/jobs", "limit=5") == "/api/v1/jobs?limit=5"
    assert request_target("", "") == "/"
    # http.server reads the request line as Latin-1: byte 0xE9 comes back as itself
    assert request_target("/s3/b/caf\xe9", "") == "/s3/b/caf%E9"
    assert request_target("/a\x01b", "") == "/a%01b"


def test_a_compressed_answer_is_decoded_for_the_view_within_the_limit() -> None:
    data = b'{"jobs": []}'
    assert decoded_answer(gzip.compress(data), "gzip", 100) == data
    assert decoded_answer(zlib.compress(data), "deflate", 100) == data
    assert decoded_answer(data, None, 100) == data
    with pytest.raises(Refused, match="over the broker's limit"):
        decoded_answer(gzip.compress(b" " * 1000), "gzip", 100)
    with pytest.raises(Refused, match="br-encoded, which the broker cannot read"):
        decoded_answer(data, "br", 100)
    with pytest.raises(Refused, match="not the gzip data it says"):
        decoded_answer(data, "gzip", 100)


# -- through the broker ------------------------------------------------------------------------

def test_a_slow_vendor_is_a_504_and_an_unreachable_one_a_502(
        emulator: Emulator, start_broker: StartBroker) -> None:
    resources = emulator.qrmi_config()["resources"]
    b = start_broker(resources, limits=Limits(upstream_timeout=0.3))
    env = b.acquire(7, QPU)["env"]
    url = f"{b.url}/p/{QPU}/api/v1/backends/{QPU}/status"
    headers = bearer(env[f"{QPU}_QRMI_IBM_QCS_IAM_APIKEY"])
    assert httpx.get(url, headers=headers).status_code == 200
    emulator.inject(Fault(path=f"/backends/{QPU}/status$", delay=1.0, count=1))
    try:
        slow = httpx.get(url, headers=headers)
    finally:
        emulator.clear_faults()
    assert (slow.status_code, slow.json()["message"]) == (
        504, "the vendor did not answer in time")
    for r in resources:
        if r["name"] == QPU:
            r["environment"]["QRMI_IBM_QCS_ENDPOINT"] = "http://127.0.0.1:9/api/v1"
    write_config(b.config_path, resources)
    absent = httpx.get(url, headers=headers)
    assert (absent.status_code, absent.json()["message"]) == (
        502, "the vendor cannot be reached: ConnectError")


def test_the_proxy_keeps_one_vendor_connection_for_a_jobs_requests(
        emulator: Emulator, start_broker: StartBroker) -> None:
    b = start_broker(emulator.qrmi_config()["resources"])
    env = b.acquire(7, QPU)["env"]
    headers = bearer(env[f"{QPU}_QRMI_IBM_QCS_IAM_APIKEY"])
    with httpx.Client(headers=headers) as job:
        answers = [job.get(f"{b.url}/p/{QPU}/api/v1/backends/{QPU}/status")
                   for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    pool = b.broker.http
    # (the connection goes back to the pool once the answer is relayed: just after the
    # job has it)
    assert wait_for(lambda: sum(len(idle) for idle in pool._idle.values()) == 1)
    assert sum(len(idle) for idle in pool._idle.values()) == 1


def test_a_token_swap_vendor_gets_the_site_token_and_the_job_its_chunked_answer(
        vendor: Vendor, start_broker: StartBroker) -> None:
    b = start_broker([{"name": "garnet_mock", "type": "iqm-server", "environment": {
        "QRMI_IQM_ISA_ENDPOINT": vendor.url, "QRMI_IQM_ISA_TOKEN": "site-secret"}}])
    env = b.acquire(7, "garnet_mock")["env"]
    headers = bearer(env["garnet_mock_QRMI_IQM_ISA_TOKEN"])
    with httpx.Client(headers=headers) as job:
        chunked = job.get(f"{b.url}/p/garnet_mock/api/v1/about")
        plain = job.get(f"{b.url}/p/garnet_mock/api/v1/quantum-computers/garnet:mock?y=1")
    assert (chunked.status_code, chunked.content) == (200, b"abcdef")
    assert chunked.headers["transfer-encoding"] == "chunked"
    assert (plain.status_code, plain.json()) == \
        (200, {"path": "/api/v1/quantum-computers/garnet:mock?y=1"})
    proxied = vendor.headers[-2:]  # the acquire asked the health route before
    assert [h["authorization"] for h in proxied] == ["Bearer site-secret"] * 2
    assert [h["accept-encoding"] for h in proxied] == ["gzip, deflate"] * 2  # the job's own
    assert len(vendor.connections) == 2  # the acquire's, and one kept alive for both
