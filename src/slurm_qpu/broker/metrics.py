"""The broker's Prometheus metrics, served at ``GET /metrics`` (text format 0.0.4).

Labels are QPU names, types, outcomes and HTTP statuses, never job ids or users: their
number stays as small as the site's QPU list, whatever the number of jobs.

    slurm_qpu_leases_active{qpu}                         gauge, from the journal at scrape
    slurm_qpu_acquire_seconds{outcome}                   histogram of lease acquisitions
    slurm_qpu_release_seconds{outcome}                   histogram of lease releases
    slurm_qpu_vendor_errors_total{qpu,type,op,error}     counter; error = exception class
    slurm_qpu_proxy_requests_total{qpu,status}           counter of proxied requests
    slurm_qpu_proxy_request_seconds{qpu}                 histogram of proxied requests
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]

# seconds: a lease cycle is milliseconds against a local vendor, seconds against a cloud
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Labels = ()) -> str:
    pairs = labels + extra
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _key(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return repr(float(value)) if value != int(value) else str(int(value))


@dataclass
class Counter:
    name: str
    help: str
    _values: dict[Labels, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            key = _key(labels)
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(_key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter",
                *(f"{self.name}{_labels(k)} {_number(v)}" for k, v in items)]


@dataclass
class _Series:
    counts: list[int]
    total: float = 0.0
    count: int = 0


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    _series: dict[Labels, _Series] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, value: float, **labels: str) -> None:
        with self._lock:
            key = _key(labels)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series([0] * len(self.buckets))
            index = bisect.bisect_left(self.buckets, value)
            if index < len(self.buckets):
                series.counts[index] += 1
            series.total += value
            series.count += 1

    def count(self, **labels: str) -> int:
        series = self._series.get(_key(labels))
        return series.count if series else 0

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            items = sorted((k, _Series(list(s.counts), s.total, s.count))
                           for k, s in self._series.items())
        for key, series in items:
            running = 0
            for bound, n in zip(self.buckets, series.counts, strict=True):
                running += n
                lines.append(f"{self.name}_bucket{_labels(key, (('le', _number(bound)),))} "
                             f"{running}")
            lines.append(f"{self.name}_bucket{_labels(key, (('le', '+Inf'),))} {series.count}")
            lines.append(f"{self.name}_sum{_labels(key)} {_number(series.total)}")
            lines.append(f"{self.name}_count{_labels(key)} {series.count}")
        return lines


@dataclass
class Gauge:
    """A gauge read when scraped: ``read()`` returns {labels: value}."""

    name: str
    help: str
    read: Callable[[], Mapping[Labels, float]]

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge",
                *(f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(self.read().items()))]


class BrokerMetrics:
    """Every metric the broker exports; the service and the server record into it."""

    def __init__(self, active_leases: Callable[[], Mapping[str, int]] = dict) -> None:
        self.acquire_seconds = Histogram(
            "slurm_qpu_acquire_seconds", "Time to acquire a job's QPUs, by outcome.")
        self.release_seconds = Histogram(
            "slurm_qpu_release_seconds", "Time to release a job's QPUs, by outcome.")
        self.vendor_errors = Counter(
            "slurm_qpu_vendor_errors_total",
            "Vendor calls that failed, by QPU, type, operation and error class.")
        self.proxy_requests = Counter(
            "slurm_qpu_proxy_requests_total", "Requests through the proxy, by QPU and status.")
        self.proxy_seconds = Histogram(
            "slurm_qpu_proxy_request_seconds", "Proxied request duration, by QPU.")
        self.leases_active = Gauge(
            "slurm_qpu_leases_active", "Leases currently held, by QPU.",
            lambda: {(("qpu", q),): float(n) for q, n in active_leases().items()})

    def render(self) -> str:
        lines: list[str] = []
        for metric in (self.leases_active, self.acquire_seconds, self.release_seconds,
                       self.vendor_errors, self.proxy_requests, self.proxy_seconds):
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
