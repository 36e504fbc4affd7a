"""What per-key limits add to a request's latency: none, in memory, in Redis.

`python -m bench.limits_redis [N]`:

1. the check alone: N x `await limiter.check(key)` (and check + the token spend of an
   answer's end) on the memory and the Redis limiter, in one event loop;
2. end to end: chatd's app on a backend that answers at once (no model), served by
   uvicorn in a subprocess, one with limits in memory and one with limits in Redis; a
   keep-alive client sends N sequential non-streamed requests to each (1 in flight), in
   interleaved rounds, with a key without limits and a key with rpm and tpm (so high
   that nothing is refused). Added latency = p50 with limits - p50 without, same server.

Redis: CHATD_BENCH_REDIS_URL, else scripts/redis.sh's throwaway instance. Holds
/tmp/chatd-bench.lock while measuring, after waiting (CHATD_BENCH_WAIT s, default 600)
for the CPUs to be quiet: on a busy machine every wait on a socket costs a trip through
the run queue, and the figures measure the machine, not chatd.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.quiet import bench_lock, busy_fraction, wait_quiet
from chatd.backend import (
    Capabilities,
    Event,
    Finish,
    GenerationRequest,
    ModelInfo,
    Start,
    TextDelta,
    Usage,
)
from chatd.keys import Key
from chatd.ratelimits import Limiter, MemoryLimiter, RedisLimiter

ROOT = Path(__file__).resolve().parent.parent
OPEN_KEY, LIMITED_KEY = "sk-bench-open", "sk-bench-limited"
BIG = 1_000_000_000
ROUND = 100


class InstantBackend:
    """A fixed two-word answer with usage, at once."""

    def list_models(self) -> list[ModelInfo]:
        return [ModelInfo("instant", "chatd")]

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        yield Start(request.model, "fp_bench")
        yield TextDelta(0, "hello there")
        yield Finish(0, "stop")
        yield Usage(prompt_tokens=5, completion_tokens=2)

    async def close(self) -> None:
        pass


def redis_url() -> str:
    url = os.environ.get("CHATD_BENCH_REDIS_URL")
    if url:
        return url
    script = ROOT / "scripts" / "redis.sh"
    return subprocess.run(
        ["bash", str(script), "start"], check=True, capture_output=True, text=True
    ).stdout.strip()


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    """p50 and p99 in ms."""
    ordered = sorted(samples_ns)
    return (
        statistics.median(ordered) / 1e6,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1e6,
    )


async def time_calls(call: Callable[[], object], n: int) -> list[int]:
    samples = []
    for _ in range(n):
        started = time.perf_counter_ns()
        await call()  # type: ignore[misc]
        samples.append(time.perf_counter_ns() - started)
    return samples


async def micro(url: str, n: int) -> None:
    key = Key("bench", f"key_bench{os.getpid()}", rpm=BIG, tpm=BIG)
    limiters: dict[str, Limiter] = {"memory": MemoryLimiter(), "redis": RedisLimiter(url)}
    print(f"the check alone, {n} calls each (ms):")
    print("| limiter | check p50 | check p99 | check + spend p50 | check + spend p99 |")
    print("| --- | --- | --- | --- | --- |")
    for name, limiter in limiters.items():
        await limiter.start()
        await time_calls(lambda lim=limiter: lim.check(key), 200)  # warm up

        async def both(lim: Limiter = limiter) -> None:
            await lim.check(key)
            await lim.spend(key, 7)

        check = percentiles(await time_calls(lambda lim=limiter: lim.check(key), n))
        spend = percentiles(await time_calls(both, n))
        print(f"| {name} | {check[0]:.3f} | {check[1]:.3f} | {spend[0]:.3f} | {spend[1]:.3f} |")
        await limiter.close()


def serve(port: int, config: Path, redis: str | None) -> None:
    """The app on InstantBackend (run in a subprocess by `end_to_end`)."""
    import uvicorn

    from chatd.api.app import create_app
    from chatd.config import Settings, load_config

    settings = Settings(
        config=load_config(config),
        data_dir=Path(tempfile.mkdtemp(prefix="chatd-bench-limits-")),
        redis_url=redis,
    )
    app = create_app(settings, lambda _: [InstantBackend()])
    uvicorn.run(app, port=port, log_level="warning", access_log=False)


@contextmanager
def server(config: Path, redis: str | None) -> Iterator[str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [sys.executable, "-m", "bench.limits_redis", "serve", str(port), str(config)]
    proc = subprocess.Popen([*args, redis or ""], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the bench server did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def end_to_end(url: str, n: int) -> None:
    body = {"model": "instant", "messages": [{"role": "user", "content": "hi"}]}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "chatd.toml"
        config.write_text(
            f'[[keys]]\nname = "open"\nkey_sha256 = "{sha(OPEN_KEY)}"\n\n'
            f'[[keys]]\nname = "limited"\nkey_sha256 = "{sha(LIMITED_KEY)}"\n'
            f"rpm = {BIG}\ntpm = {BIG}\n"
        )
        samples: dict[tuple[str, str], list[int]] = {}
        with server(config, None) as memory, server(config, url) as shared:
            targets = {"memory": memory, "redis": shared}
            clients = {name: httpx.Client(base_url=base) for name, base in targets.items()}
            for _ in range(max(1, n // ROUND)):
                for name, client in clients.items():
                    for key in (OPEN_KEY, LIMITED_KEY):
                        headers = {"authorization": f"Bearer {key}"}
                        got = samples.setdefault((name, key), [])
                        for _ in range(ROUND):
                            started = time.perf_counter_ns()
                            response = client.post(
                                "/v1/chat/completions", json=body, headers=headers
                            )
                            got.append(time.perf_counter_ns() - started)
                            assert response.status_code == 200, response.text
            for client in clients.values():
                client.close()
    print(f"\nend to end, {n} sequential requests each (ms):")
    print("| limits | no limits p50 | limited key p50 | added p50 | limited key p99 |")
    print("| --- | --- | --- | --- | --- |")
    for name in ("memory", "redis"):
        base, _ = percentiles(samples[(name, OPEN_KEY)])
        p50, p99 = percentiles(samples[(name, LIMITED_KEY)])
        print(f"| {name} | {base:.3f} | {p50:.3f} | {p50 - base:+.3f} | {p99:.3f} |")


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def main(argv: list[str]) -> None:
    if argv and argv[0] == "serve":
        serve(int(argv[1]), Path(argv[2]), argv[3] or None)
        return
    n = int(argv[0]) if argv else 3000
    url = redis_url()
    try:
        import hiredis  # noqa: F401

        parser = "hiredis"
    except ImportError:
        parser = "pure-Python"
    with bench_lock():
        quiet = wait_quiet(float(os.environ.get("CHATD_BENCH_WAIT", "600")))
        print(f"Redis {url} (reply parser: {parser}); before the run: {quiet}\n")
        asyncio.run(micro(url, n))
        end_to_end(url, n)
        print(f"\nCPUs busy right after: {busy_fraction():.0%}")


if __name__ == "__main__":
    main(sys.argv[1:])
