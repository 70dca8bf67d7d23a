"""The emulator's HTTP layer: routing, faults, control API, bodies."""

from __future__ import annotations

import gzip
from collections.abc import Callable

import httpx

from slurm_qpu_emulator.web import Fault, HttpError, Request, Response, Server, Service

# the `serve` fixture (tests/emulator/conftest.py); not imported from there: with several
# conftest.py files on sys.path, "conftest" may name another tier's
Serve = Callable[..., Server]


class Echo(Service):
    name = "echo"

    def __init__(self) -> None:
        super().__init__("/echo")
        self.route("POST", "/items/{item}", self.post)
        self.route("GET", "/boom", self.boom)

    def qpu_names(self) -> list[str]:
        return ["qpu_a"]

    def post(self, request: Request) -> Response:
        return Response.json({"item": request.params["item"], "body": request.json()})

    def boom(self, request: Request) -> Response:
        raise HttpError(409, "already final")


def test_routes_match_path_parameters_and_decode_json(serve: Serve) -> None:
    server = serve(Echo())
    r = httpx.post(f"{server.url}/echo/items/7", json={"a": 1})
    assert r.json() == {"item": "7", "body": {"a": 1}}


def test_gzip_request_bodies_are_decompressed(serve: Serve) -> None:
    server = serve(Echo())
    r = httpx.post(f"{server.url}/echo/items/1", content=gzip.compress(b'{"z": 2}'),
                   headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.json()["body"] == {"z": 2}


def test_a_body_that_claims_gzip_but_is_not_gets_400(serve: Serve) -> None:
    server = serve(Echo())
    r = httpx.post(f"{server.url}/echo/items/1", content=b"plain",
                   headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400
    assert r.json() == {"error": "Content-Encoding says gzip but the body is not gzip data"}


def test_unknown_route_and_wrong_method_answer_404_and_405(serve: Serve) -> None:
    server = serve(Echo())
    assert httpx.get(f"{server.url}/echo/nothing").status_code == 404
    r = httpx.get(f"{server.url}/echo/items/1")
    assert r.status_code == 405
    assert r.json()["errors"][0]["message"] == "method GET not allowed on /items/1"


def test_route_errors_use_the_services_error_shape(serve: Serve) -> None:
    server = serve(Echo())
    r = httpx.get(f"{server.url}/echo/boom")
    assert r.status_code == 409
    assert r.json()["errors"][0]["message"] == "already final"


def test_injected_status_fault_is_served_count_times_then_cleared(serve: Serve) -> None:
    server = serve(Echo())
    server.inject(Fault(path="/items/", status=503, count=2, message="down"))
    codes = [httpx.post(f"{server.url}/echo/items/1", json={}).status_code for _ in range(3)]
    assert codes == [503, 503, 200]


def test_faults_and_maintenance_are_controlled_over_http(serve: Serve) -> None:
    server = serve(Echo())
    r = httpx.post(f"{server.url}/_emulator/faults", json={"path": "/boom", "status": 502})
    assert r.json()[0]["status"] == 502
    assert httpx.get(f"{server.url}/echo/boom").status_code == 502
    httpx.delete(f"{server.url}/_emulator/faults")
    assert httpx.get(f"{server.url}/echo/boom").status_code == 409
    r = httpx.post(f"{server.url}/_emulator/maintenance", json={"qpu": "qpu_a", "on": True})
    assert r.json() == {"echo": ["qpu_a"]}
    r = httpx.post(f"{server.url}/_emulator/maintenance", json={"qpu": "nope"})
    assert r.status_code == 404
    assert r.json() == {"error": "no service offers a QPU named nope"}


def test_a_bad_fault_spec_is_refused_with_the_reason(serve: Serve) -> None:
    server = serve(Echo())
    r = httpx.post(f"{server.url}/_emulator/faults", json={"bogus": 1})
    assert r.status_code == 400
    assert r.json()["error"].startswith("bad fault: ")


def test_request_log_records_method_path_and_status(serve: Serve) -> None:
    server = serve(Echo())
    httpx.get(f"{server.url}/echo/boom")
    log = httpx.get(f"{server.url}/_emulator/requests").json()
    assert [(e["method"], e["path"], e["status"]) for e in log] == [("GET", "/echo/boom", 409)]
