"""The gateway's Prometheus metrics, per upstream and model (served by /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from chatd.telemetry import REGISTRY

LABELS = ("upstream", "model")
# loopback upstreams answer in well under a millisecond; vendors in seconds
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1)

REQUESTS = Counter(
    "chatd_upstream_requests",
    "Attempts sent to an upstream, by outcome (HTTP status, stream_error, cancelled)",
    [*LABELS, "status"],
    registry=REGISTRY,
)
UPSTREAM_LATENCY = Histogram(
    "chatd_upstream_latency_seconds",
    "Time spent waiting on the upstream for one answer",
    LABELS,
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
OVERHEAD = Histogram(
    "chatd_gateway_overhead_seconds",
    "chatd's own time for one relayed answer: time in chatd minus time waiting upstream",
    LABELS,
    buckets=OVERHEAD_BUCKETS,
    registry=REGISTRY,
)
RETRIES = Counter(
    "chatd_upstream_retries", "Attempts repeated on the same target", LABELS, registry=REGISTRY
)
FALLBACKS = Counter(
    "chatd_upstream_fallbacks",
    "Requests a route moved away from this target to the next",
    LABELS,
    registry=REGISTRY,
)
CIRCUIT = Gauge(
    "chatd_upstream_circuit_state",
    "Circuit breaker: 0 closed, 1 open (skipped), 2 half-open (probing)",
    LABELS,
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "chatd_upstream_in_flight", "Requests running on a target", LABELS, registry=REGISTRY
)
