"""The broker's HTTP server: ThreadingHTTPServer, tuned for bursts of short connections.

Every prolog and epilog is a new process with a new connection, so a cluster starting a
hundred jobs at once sends a hundred connections at once. Two things of the standard
library's server cost them (BENCHMARKS.md, item 3):

* its listen backlog of 5: the kernel drops the SYNs of a burst beyond it and each of
  those clients waits a whole second for TCP to try again;
* a new thread per connection: starting one costs ~0.1-0.2 ms of the broker's single
  interpreter. Here a thread that has served its connection waits a while for the next
  one instead of exiting. There is still one thread per open connection, as before (a
  bounded pool would let a job's idle keep-alive connections starve the prologs).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any

IDLE_SECONDS = 30.0  # how long a thread without a connection waits for one
MAX_IDLE = 256  # threads kept waiting at most; more exit when their connection ends

_Work = tuple[Any, Any]  # (socket, client address)


class ThreadCache:
    """Runs each item in a thread of its own, reusing threads that are done.

    ``idle`` counts the waiting threads not yet promised an item: ``submit`` hands an
    item to a waiting thread only while one is unpromised, and starts a new thread
    otherwise, so no item ever waits for a busy thread."""

    def __init__(self, work: Callable[[Any, Any], None], name: str = "broker-request",
                 idle_seconds: float = IDLE_SECONDS, max_idle: int = MAX_IDLE) -> None:
        self._work = work
        self._name = name
        self._idle_seconds = idle_seconds
        self._max_idle = max_idle
        self._items: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._closed = False

    def submit(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if self._idle > 0 and not self._closed:
                self._idle -= 1  # promised: that thread takes this item
                self._items.put((request, client_address))
                return
        threading.Thread(target=self._run, args=((request, client_address),),
                         name=self._name, daemon=True).start()

    def _run(self, item: _Work | None) -> None:
        while item is not None:
            self._work(*item)
            item = None  # let the connection go while waiting for the next one
            with self._lock:
                if self._closed or self._idle >= self._max_idle:
                    return
                self._idle += 1
            try:
                item = self._items.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    # submit() promises under this lock: an item put meanwhile is ours
                    try:
                        item = self._items.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return

    def close(self) -> None:
        """Let the waiting threads exit (the busy ones finish their connection)."""
        with self._lock:
            self._closed = True
            waiting, self._idle = self._idle, 0
        for _ in range(waiting):
            self._items.put(None)

    @property
    def idle(self) -> int:
        return self._idle


class BrokerHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a connection left open never keeps the broker from stopping
    request_queue_size = 1024  # the kernel caps it at net.core.somaxconn

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads = ThreadCache(self.process_request_thread)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.threads.submit(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self.threads.close()
