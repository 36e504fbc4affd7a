"""GET /metrics: Prometheus text format, read from the backends at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatd.backend import SupportsStats
from chatd.router import Router
from chatd.telemetry import REGISTRY


class BackendCollector:
    """Engine gauges and counters of every backend that reports `stats()`."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for backend in self.router.backends:
            if not isinstance(backend, SupportsStats):
                continue
            model = backend.list_models()[0].id
            for name, value in backend.stats().items():
                family = families.get(name)
                if family is None:
                    if name.endswith("_total"):
                        family = CounterMetricFamily(
                            "chatd_" + name.removesuffix("_total"), name, labels=["model"]
                        )
                    else:
                        family = GaugeMetricFamily("chatd_" + name, name, labels=["model"])
                    families[name] = family
                family.add_metric([model], value)
        yield from families.values()


async def metrics(request: Request) -> Response:
    registry = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry()
        registry.register(BackendCollector(request.app.state.router))
        request.app.state.metrics_registry = registry
    body = generate_latest(registry) + generate_latest(REGISTRY)
    return Response(body, media_type="text/plain; version=0.0.4")


routes = [Route("/metrics", metrics, methods=["GET"])]
