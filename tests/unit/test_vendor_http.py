"""The vendor HTTP client's error wording and request options, across vendors' body shapes."""

from __future__ import annotations

import httpx
import pytest

from slurm_qpu.vendors.common.http import RetryPolicy, VendorClient, VendorError, vendor_message


@pytest.mark.parametrize("body, expected", [
    ({"errors": [{"code": "1217", "message": "Session has been closed."}]},
     "Session has been closed."),
    ({"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found."},
     "Provided API key could not be found."),
    ({"error": "access_denied", "error_description": "Wrong email or password."},
     "Wrong email or password."),
    ({"detail": [{"loc": ["body", "shots"], "msg": "must be positive"},
                 {"loc": ["query", "tag"], "msg": "too long"}]},
     "body.shots: must be positive; query.tag: too long"),
    ({"detail": "Input is not valid QIR"}, "Input is not valid QIR"),
    ({"status": "fail", "code": 400, "message": "Invalid batch.",
      "data": {"description": ["Device FRESNEL is unavailable"]}},
     "Invalid batch: Device FRESNEL is unavailable"),
    ({"status": "fail", "message": "Forbidden."}, "Forbidden."),
])
def test_vendor_message_is_the_human_part_of_each_vendors_error_body(
        body: object, expected: str) -> None:
    assert vendor_message(httpx.Response(400, json=body)) == expected


def test_vendor_message_of_a_plain_text_body_is_the_text() -> None:
    assert vendor_message(httpx.Response(502, text="Bad gateway\n")) == "Bad gateway"


def test_request_sends_files_content_and_extra_headers() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    client = VendorClient("https://v.test", "Vendor", httpx.MockTransport(handle),
                          RetryPolicy(backoff=0))
    client.request("PUT", "/obj", content=b"raw", extra_headers={"x-amz-meta": "1"})
    client.request("POST", "/up", files={"input": ("input", b"qir", "text/plain")})
    assert seen[0].content == b"raw" and seen[0].headers["x-amz-meta"] == "1"
    assert b'name="input"' in seen[1].read() and b"qir" in seen[1].content


def test_an_unexpected_status_carries_the_vendors_words() -> None:
    client = VendorClient("https://v.test", "Vendor", httpx.MockTransport(
        lambda r: httpx.Response(409, json={"errors": [{"message": "job already final"}]})),
        RetryPolicy(backoff=0))
    with pytest.raises(VendorError) as excinfo:
        client.request("POST", "/jobs/1/cancel")
    assert str(excinfo.value) == "Vendor error 409: job already final"
    assert excinfo.value.status == 409


def test_vendor_clients_share_one_tls_context_per_process(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from slurm_qpu.vendors.common import http as vendor_http

    built: list[object] = []
    real = httpx.create_ssl_context

    def counting() -> object:
        built.append(real())
        return built[-1]

    monkeypatch.setattr(httpx, "create_ssl_context", counting)
    vendor_http.tls_context.cache_clear()
    try:
        for _ in range(3):  # the broker makes clients for every acquire and release
            vendor_http.VendorClient("https://vendor.test", "Test").close()
    finally:
        vendor_http.tls_context.cache_clear()
    assert len(built) == 1  # loading the CA bundle costs ~40 ms: once, not per client
