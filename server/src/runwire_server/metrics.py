"""Prometheus metrics: calls, latency, open watch streams, orchestration results, group commit
batches and rows pruned by retention.

Every server has its own registry (tests run several servers in one process); the HTTP
endpoint that exposes it is opt-in (`RUNWIRE_METRICS_ADDRESS`).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Buckets from under a millisecond (a read by id) to seconds (a lock wait); watch streams are
# not timed (they last as long as a run).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "runwire_rpc_calls",
            "RPCs finished, by method and gRPC status code.",
            ["service", "method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "runwire_rpc_duration_seconds",
            "Time to answer a unary RPC.",
            ["service", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.watch_streams = Gauge(
            "runwire_watch_streams_open",
            "Open WatchFlowRun and WatchFlowRuns streams.",
            registry=self.registry,
        )
        self.transitions = Counter(
            "runwire_state_transitions",
            "Proposed state changes, by kind of run and orchestration result.",
            ["run_kind", "status"],
            registry=self.registry,
        )
        self.write_batches = Histogram(
            "runwire_write_batch_size",
            "Writes committed together in one SQLite transaction (group commit).",
            ["outcome"],  # "committed", or "split" when one failed and each ran alone
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.leases_ended = Counter(
            "runwire_leases_ended",
            "Runs whose reporter stopped heartbeating, by kind of run and the state they were "
            "given (CRASHED, or CANCELLED for a run that was cancelling).",
            ["run_kind", "state"],
            registry=self.registry,
        )
        self.pruned = Counter(
            "runwire_pruned_rows",
            "Rows removed by retention: watch events, run-deleted markers and flow runs.",
            ["kind"],
            registry=self.registry,
        )
        self._call_children: dict[tuple[str, str], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._http: Any = None

    def call_finished(self, method: str, code: str, seconds: float | None) -> None:
        # Label lookups cost more than the increments; each series is looked up once.
        counter = self._call_children.get((method, code))
        if counter is None:
            service, _, name = method.lstrip("/").rpartition("/")
            counter = self._call_children[(method, code)] = self.calls.labels(service, name, code)
        counter.inc()
        if seconds is not None:
            histogram = self._latency_children.get(method)
            if histogram is None:
                service, _, name = method.lstrip("/").rpartition("/")
                histogram = self._latency_children[method] = self.latency.labels(service, name)
            histogram.observe(seconds)

    def write_batch(self, size: int, committed: bool) -> None:
        self.write_batches.labels("committed" if committed else "split").observe(size)

    def serve(self, address: str) -> int:
        """Expose /metrics over HTTP on `address` (host:port); returns the bound port."""
        host, _, port = address.rpartition(":")
        server, _thread = start_http_server(
            int(port), addr=host or "127.0.0.1", registry=self.registry
        )
        self._http = server
        return int(server.server_port)

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
