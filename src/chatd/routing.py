"""The gateway backend: `vendor/model` ids and routes, with retries, fallbacks and breakers.

`Gateway` is one Backend in front of every upstream adapter. Each model it serves is a
list of targets: one for `vendor/model`, several for a `[[routes]]` name. Before the
first event reaches the client, a failed attempt is retried on the same target
(exponential backoff with jitter, or the vendor's Retry-After, within the target's
timeout) and then the next target is tried; a target whose circuit is open is skipped.
Once `Start` is out, a failure ends the answer (the API layer sends the error event).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

from chatd import gateway_metrics as metrics
from chatd.backend import (
    Backend,
    BackendError,
    Capabilities,
    Event,
    GenerationFailed,
    GenerationRequest,
    ModelInfo,
    Relayed,
    Start,
    SupportsResponsesRelay,
    UpstreamError,
    UpstreamSpec,
)
from chatd.gateway_config import LOCAL, ConfigError, RouteSpec

BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 8.0


class Breaker:
    """Opens after `threshold` failures in a row; after `cooldown_s`, lets one probe through."""

    def __init__(self, threshold: int, cooldown_s: float, labels: tuple[str, str]) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False
        self.gauge = metrics.CIRCUIT.labels(*labels)
        self.gauge.set(0)

    @property
    def closed(self) -> bool:
        return self.opened_at is None

    def retry_in(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown_s - time.monotonic())

    def allow(self) -> bool:
        """Whether a request may go to the target now (taking the probe when half-open)."""
        if self.opened_at is None:
            return True
        if self.probing or self.retry_in() > 0:
            return False
        self.probing = True
        self.gauge.set(2)
        return True

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.probing = False
        self.gauge.set(0)

    def failure(self) -> None:
        self.failures += 1
        if self.probing or (self.threshold and self.failures >= self.threshold):
            self.opened_at = time.monotonic()
            self.probing = False
            self.gauge.set(1)

    def abandon(self) -> None:
        """A probe that ended without an answer either way (the client left)."""
        if self.probing:
            self.probing = False
            self.gauge.set(1)


@dataclass(slots=True)
class Target:
    """One model of one backend, as a route serves it."""

    id: str  # "openai/gpt-4o", "local/smollm2"
    model: str  # what the backend receives as request.model
    backend: Backend
    labels: tuple[str, str]  # (upstream, model) for the metrics
    max_retries: int
    timeout_s: float
    breaker: Breaker
    in_flight: int = 0

    def unavailable(self) -> UpstreamError:
        wait = self.breaker.retry_in()
        return UpstreamError(
            self.labels[0],
            f"Upstream `{self.labels[0]}` is skipped for {wait:.0f} s after "
            f"{self.breaker.failures} failures in a row (circuit open).",
            status=503,
            code="upstream_unavailable",
            headers={"retry-after": str(max(1, math.ceil(wait)))},
            retry_after_s=wait,
        )


@dataclass(slots=True)
class Route:
    info: ModelInfo
    targets: list[Target]
    strategy: str = "fallback"
    turn: int = 0

    def order(self) -> list[Target]:
        """Targets in the order to try: as written, or least in flight first (ties rotate)."""
        if self.strategy != "balance" or len(self.targets) == 1:
            return self.targets
        n = len(self.targets)
        self.turn = (self.turn + 1) % n
        ranked = sorted(range(n), key=lambda i: (self.targets[i].in_flight, (i - self.turn) % n))
        return [self.targets[i] for i in ranked]


@dataclass(slots=True)
class _Opened:
    events: AsyncIterator[Event]
    start: Start


def is_failure(exc: BackendError) -> bool:
    """The target's fault (counts against its breaker, may fall back), not the client's."""
    return exc.status >= 500 or exc.status == 429


def backoff_s(attempt: int, retry_after_s: float | None) -> float:
    if retry_after_s is not None:
        return retry_after_s
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt) * random.uniform(0.5, 1.5)


class Gateway:
    """Serves every upstream's `vendor/model` ids and every route name."""

    def __init__(
        self,
        adapters: list[Backend],
        routes: Sequence[RouteSpec] = (),
        local: Backend | None = None,
    ) -> None:
        self.adapters = adapters
        self.routes: dict[str, Route] = {}
        targets: dict[str, Target] = {}
        for adapter in adapters:
            spec: UpstreamSpec = adapter.spec  # type: ignore[attr-defined]  # every adapter has one
            for info in adapter.list_models():
                target = _target(info.id, info.id, adapter, spec)
                targets[info.id] = target
                self.routes[info.id] = Route(info, [target])
        local_ids = {info.id for info in local.list_models()} if local is not None else set()
        for spec_route in routes:
            chosen = []
            for name in spec_route.targets:
                vendor, _, model = name.partition("/")
                if vendor == LOCAL and local is not None and model in local_ids:
                    targets.setdefault(name, _target(name, model, local, None))
                if name not in targets:
                    raise ConfigError(
                        f'routes "{spec_route.model}": target {name!r} is not a model of any '
                        "upstream (GET /v1/models lists them)"
                    )
                chosen.append(targets[name])
            if spec_route.model in self.routes:
                raise ConfigError(f'routes "{spec_route.model}": the name is already a model id')
            info = ModelInfo(spec_route.model, "chatd")
            self.routes[spec_route.model] = Route(info, chosen, spec_route.strategy)

    def list_models(self) -> list[ModelInfo]:
        return [route.info for route in self.routes.values()]

    def capabilities(self, model: str) -> Capabilities:
        first = self.routes[model].targets[0]
        return first.backend.capabilities(first.model)

    def responses_relay(self, model: str) -> tuple[str, str, SupportsResponsesRelay] | None:
        """A model served by exactly one upstream that relays the Responses API (not a route
        of several targets, not the local model): (upstream, its own model id, adapter)."""
        route = self.routes.get(model)
        if route is None or len(route.targets) != 1:
            return None
        target = route.targets[0]
        adapter = target.backend
        spec: UpstreamSpec | None = getattr(adapter, "spec", None)  # None: the local model
        if spec is None or not spec.relay_responses:
            return None
        if not isinstance(adapter, SupportsResponsesRelay):
            return None
        return target.labels[0], target.labels[1], MeteredRelay(adapter, target.labels)

    def relay_upstream(self, name: str) -> SupportsResponsesRelay | None:
        for adapter in self.adapters:
            spec: UpstreamSpec = adapter.spec  # type: ignore[attr-defined]
            if spec.name == name:
                if not spec.relay_responses or not isinstance(adapter, SupportsResponsesRelay):
                    return None
                # a stored response's operations name no model
                return MeteredRelay(adapter, (name, ""))
        return None

    async def close(self) -> None:
        for adapter in self.adapters:
            await adapter.close()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        route = self.routes[request.model]
        error: BackendError | None = None
        failed: Target | None = None
        for target in route.order():
            if not target.breaker.allow():
                error = error or target.unavailable()
                continue
            if failed is not None:
                metrics.FALLBACKS.labels(*failed.labels).inc()
            opened = await self._open(target, request)
            if isinstance(opened, BackendError):
                error, failed = opened, target
                continue
            async for event in self._relay(target, request, opened):
                yield event
            return
        assert error is not None
        raise error

    async def _open(self, target: Target, request: GenerationRequest) -> _Opened | BackendError:
        """The target's Start, retried; the last error when the target gave up."""
        timing = request.timing
        deadline = timing.started + target.timeout_s
        attempt = 0
        while True:
            # a vendor's own id needs no copy of the request (a copy costs ~2% of the CPU)
            same = target.model == request.model
            events = aiter(
                target.backend.generate(request if same else replace(request, model=target.model))
            )
            try:
                first = await anext(events)
            except StopAsyncIteration:
                target.breaker.abandon()
                raise GenerationFailed("The upstream's answer ended before it began.") from None
            except BackendError as exc:
                await _close(events)
                metrics.REQUESTS.labels(*target.labels, str(exc.status)).inc()
                if not is_failure(exc):
                    target.breaker.abandon()
                    raise
                target.breaker.failure()
                retryable = getattr(exc, "retryable", False)
                delay = backoff_s(attempt, getattr(exc, "retry_after_s", None))
                if (
                    not retryable
                    or attempt >= target.max_retries
                    or not target.breaker.closed
                    or time.perf_counter() + delay > deadline
                ):
                    return exc
                metrics.RETRIES.labels(*target.labels).inc()
                attempt += 1
                await asyncio.sleep(delay)
                timing.upstream_s += delay  # waiting on the vendor, not chatd's own work
                continue
            except BaseException:
                target.breaker.abandon()
                await _close(events)
                raise
            if isinstance(first, Start):
                target.breaker.success()
            return _Opened(events, first)  # type: ignore[arg-type]

    async def _relay(
        self, target: Target, request: GenerationRequest, opened: _Opened
    ) -> AsyncIterator[Event]:
        target.in_flight += 1
        in_flight = metrics.IN_FLIGHT.labels(*target.labels)
        in_flight.inc()
        outcome = "cancelled"
        try:
            yield opened.start
            async for event in opened.events:
                yield event
            outcome = "200"
        except BackendError as exc:
            outcome = "stream_error"
            if is_failure(exc):
                target.breaker.failure()
            raise
        except Exception:
            outcome = "stream_error"
            raise
        finally:
            target.in_flight -= 1
            in_flight.dec()
            metrics.REQUESTS.labels(*target.labels, outcome).inc()
            if outcome == "200":
                timing = request.timing
                metrics.UPSTREAM_LATENCY.labels(*target.labels).observe(timing.upstream_s)
                metrics.OVERHEAD.labels(*target.labels).observe(timing.overhead_s())
            await _close(opened.events)


def _target(id: str, model: str, backend: Backend, spec: UpstreamSpec | None) -> Target:
    vendor, _, name = id.partition("/")
    labels = (vendor, name)
    if spec is None:  # the local engine: its own queue answers 429; no breaker
        return Target(id, model, backend, labels, 0, 600.0, Breaker(0, 0.0, labels))
    return Target(
        id,
        model,
        backend,
        labels,
        spec.max_retries,
        spec.timeout_s,
        Breaker(spec.circuit_failures, spec.circuit_cooldown_s, labels),
    )


async def _close(events: AsyncIterator[Event]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


class MeteredRelay:
    """An adapter's Responses relay, counted in `chatd_upstream_requests_total` by status
    (the upstream's, or chatd's for one it could not reach) as chat requests are."""

    def __init__(self, adapter: SupportsResponsesRelay, labels: tuple[str, str]) -> None:
        self.adapter = adapter
        self.labels = labels

    async def relay_responses(
        self, method: str, path: str = "", *, query: str = "", body: bytes | None = None
    ) -> Relayed:
        try:
            relayed = await self.adapter.relay_responses(method, path, query=query, body=body)
        except BackendError as exc:
            metrics.REQUESTS.labels(*self.labels, str(exc.status)).inc()
            raise
        metrics.REQUESTS.labels(*self.labels, str(relayed.status)).inc()
        return relayed
