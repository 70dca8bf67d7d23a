"""A stand-in for the Acme Quantum cloud, to try this package with (and to test it): devices
and runs in memory, one API token. Runs finish at once with half ``00`` and half ``11``.

    python -m acme_qpu.cloud --port 8470 --token acme-site-token
"""

from __future__ import annotations

import argparse
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEVICES = {"acme_1": {"name": "acme_1", "status": "online", "qubits": 2}}


class AcmeCloud(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], token: str) -> None:
        super().__init__(address, _Handler)
        self.token = token
        self.runs: dict[str, dict[str, Any]] = {}
        self.seen: list[tuple[str, str, str]] = []  # method, path, Authorization
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: AcmeCloud

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> None:
        auth = self.headers.get("Authorization", "")
        with self.server.lock:
            self.server.seen.append((self.command, self.path, auth))
        if auth != f"Bearer {self.server.token}":
            return self._answer(401, {"error": "invalid API token"})
        parts = self.path.strip("/").split("/")
        if parts[:2] == ["v1", "devices"] and len(parts) == 3 and parts[2] in DEVICES:
            return self._answer(200, DEVICES[parts[2]])
        if parts == ["v1", "runs"] and self.command == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if body.get("device") not in DEVICES:
                return self._answer(404, {"error": f"no device {body.get('device')}"})
            shots = int(body.get("shots") or 100)
            run = {"id": str(uuid.uuid4()), "device": body["device"], "shots": shots,
                   "status": "done", "counts": {"00": shots // 2, "11": shots - shots // 2}}
            with self.server.lock:
                self.server.runs[run["id"]] = run
            return self._answer(201, run)
        if parts[:2] == ["v1", "runs"] and len(parts) == 3 and parts[2] in self.server.runs:
            run = self.server.runs[parts[2]]
            if self.command == "DELETE" and run["status"] in ("queued", "running"):
                run["status"] = "cancelled"
            return self._answer(200, run)
        return self._answer(404, {"error": f"no route {self.command} {self.path}"})

    do_GET = do_POST = do_DELETE = _route

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8470)
    parser.add_argument("--token", required=True, help="the API token it accepts")
    args = parser.parse_args()
    AcmeCloud((args.host, args.port), args.token).serve_forever()


if __name__ == "__main__":
    main()
