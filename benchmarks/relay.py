"""python -m benchmarks.relay PORT UPSTREAM_PORT

A bare TCP relay on 127.0.0.1:PORT to 127.0.0.1:UPSTREAM_PORT: two threads per
connection copying bytes with recv_into/sendall, no HTTP, no logic. The proxy benchmark
puts it beside the broker to show what one more Python hop costs on this machine by
itself: the broker's overhead is what it adds beyond this floor."""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading

BLOCK = 256 * 1024


def pump(src: socket.socket, dst: socket.socket) -> None:
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    with contextlib.suppress(OSError):
        while True:
            n = src.recv_into(view)
            if not n:
                break
            dst.sendall(view[:n])
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def serve(client: socket.socket, upstream_port: int) -> None:
    with client, socket.create_connection(("127.0.0.1", upstream_port)) as upstream:
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join()


def main(argv: list[str]) -> int:
    port, upstream_port = int(argv[0]), int(argv[1])
    listener = socket.create_server(("127.0.0.1", port), backlog=128)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, upstream_port), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
