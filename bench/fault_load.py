"""Load with faults: many concurrent streams, some clients hanging up at random points.

    python -m bench.fault_load [--streams 200] [--rounds 10] [--disconnect 0.3]
                               [--max-tokens 32] [--parallel 8] [--url URL] [--seed 1]

Each round opens `--streams` streaming requests at once against one chatd (without --url
it starts `chatd serve --parallel 8`; the rest of the streams queue). A `--disconnect`
share of the clients hang up at a random point: after a random delay (often while still
queued) or after a random number of chunks. Every other stream must be complete: each
chunk valid against CreateChatCompletionStreamResponse of the served document, each
choice given a finish_reason, the stream ended by `data: [DONE]`. After each round
/metrics must come back to 0 running and waiting requests and 0 running sequences (no
sequence leaked), and the server's RSS is recorded (flat across rounds). Prints a
markdown table; exits 1 on any incomplete or invalid stream, leak or failed request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import prompts, servers
from bench.streams import StreamValidator

ACTIVE = ("chatd_running_requests", "chatd_running_sequences", "chatd_waiting_requests")
SETTLE_S = 30.0


@dataclass
class Outcome:
    """One client of a round."""

    plan: str  # "complete", "hang up after Ns" or "hang up after N chunks"
    hung_up: bool = False
    problems: list[str] = field(default_factory=list)


@dataclass
class Round:
    index: int
    outcomes: list[Outcome]
    wall_s: float
    settle_s: float
    active: dict[str, float]
    rss_mb: float | None

    @property
    def completed(self) -> int:
        return sum(1 for o in self.outcomes if not o.hung_up and not o.problems)

    @property
    def hung_up(self) -> int:
        return sum(1 for o in self.outcomes if o.hung_up)

    @property
    def failed(self) -> list[str]:
        return [f"{o.plan}: {p}" for o in self.outcomes for p in o.problems]

    @property
    def leaked(self) -> bool:
        return any(self.active.values())

    def row(self) -> str:
        rss = f"{self.rss_mb:.0f}" if self.rss_mb is not None else "n/a"
        active = "/".join(f"{self.active.get(name, float('nan')):.0f}" for name in ACTIVE)
        return (
            f"| {self.index} | {len(self.outcomes)} | {self.completed} | {self.hung_up} | "
            f"{len(self.failed)} | {self.wall_s:.1f} | {self.settle_s:.1f} | {active} | {rss} |"
        )


HEADER = (
    "| round | streams | complete and valid | hung up | bad | wall s | settle s "
    "| running req/seq, waiting | RSS MB |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


class FaultLoad:
    def __init__(self, url: str, args: argparse.Namespace, server: servers.Server | None) -> None:
        self.url = url
        self.args = args
        self.server = server
        self.random = random.Random(args.seed)
        document = httpx.get(url + "/openapi.json", timeout=30).json()
        self.validator = StreamValidator(document)
        self.model = httpx.get(url + "/v1/models", timeout=30).json()["data"][0]["id"]

    def payload(self, i: int) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": prompts.chat(i),
            "max_tokens": self.args.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": self.random.random() < 0.5},
        }

    def plan(self) -> tuple[str, float | None, int | None]:
        """(description, hang up after seconds, hang up after chunks)."""
        if self.random.random() >= self.args.disconnect:
            return "complete", None, None
        if self.random.random() < 0.5:
            delay = self.random.uniform(0.05, self.args.hangup_window)
            return f"hang up after {delay:.1f}s", delay, None
        chunks = self.random.randint(1, self.args.max_tokens)
        return f"hang up after {chunks} chunks", None, chunks

    async def client(self, http: httpx.AsyncClient, i: int) -> Outcome:
        description, delay, chunks = self.plan()
        outcome = Outcome(description)
        try:
            await asyncio.wait_for(self.stream(http, i, chunks, outcome), delay)
        except TimeoutError:
            outcome.hung_up = True
        except (httpx.HTTPError, OSError) as exc:
            outcome.problems.append(f"request failed: {exc!r}")
        return outcome

    async def stream(
        self, http: httpx.AsyncClient, i: int, hang_up_after: int | None, outcome: Outcome
    ) -> None:
        async with http.stream("POST", "/v1/chat/completions", json=self.payload(i)) as response:
            if response.status_code != 200:
                body = (await response.aread()).decode(errors="replace")[:300]
                outcome.problems.append(f"status {response.status_code}: {body}")
                return
            events: list[str] = []
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                events.append(line[5:].strip())
                if hang_up_after is not None and len(events) >= hang_up_after:
                    outcome.hung_up = True
                    return  # leaving the block closes the connection mid-stream
        outcome.problems += self.incomplete(events)

    def incomplete(self, events: list[str]) -> list[str]:
        problems = self.validator.problems(events)
        if not events or events[-1] != "[DONE]":
            return [*problems, "no [DONE]"]
        finished: set[int] = set()
        started: set[int] = set()
        for data in events[:-1]:
            for choice in json.loads(data).get("choices") or ():
                started.add(choice["index"])
                if choice.get("finish_reason"):
                    finished.add(choice["index"])
        if not started or started != finished:
            problems.append(f"choices {sorted(started - finished)} without a finish_reason")
        return problems

    async def round(self, index: int) -> Round:
        limits = httpx.Limits(max_connections=self.args.streams + 8)
        timeout = httpx.Timeout(900.0, connect=30.0)
        began = time.monotonic()
        async with httpx.AsyncClient(base_url=self.url, limits=limits, timeout=timeout) as http:
            offset = index * self.args.streams
            outcomes = await asyncio.gather(
                *(self.client(http, offset + i) for i in range(self.args.streams))
            )
        wall = time.monotonic() - began
        settled = time.monotonic()
        active = await self.settle()
        settle_s = time.monotonic() - settled
        rss = self.server.rss_mb() if self.server else None
        return Round(index, list(outcomes), wall, settle_s, active, rss)

    async def settle(self) -> dict[str, float]:
        """The active gauges once they reach 0, or as they stand after SETTLE_S."""
        deadline = time.monotonic() + SETTLE_S
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            while True:
                active = active_gauges((await http.get("/metrics")).text)
                if not any(active.values()) or time.monotonic() > deadline:
                    return active
                await asyncio.sleep(0.1)

    def run(self) -> list[Round]:
        rounds = []
        print(HEADER, flush=True)
        for index in range(1, self.args.rounds + 1):
            result = asyncio.run(self.round(index))
            print(result.row(), flush=True)
            for failure in result.failed[:5]:
                print("  -", failure, flush=True)
            rounds.append(result)
        return rounds


def active_gauges(text: str) -> dict[str, float]:
    """Sum over models of each ACTIVE gauge in a Prometheus text page."""
    found = {name: 0.0 for name in ACTIVE}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in found:
                found[sample.name] += sample.value
    return found


@contextmanager
def server(args: argparse.Namespace) -> Iterator[tuple[str, servers.Server | None]]:
    if args.url:
        yield args.url.rstrip("/"), None
        return
    spec = servers.chatd(prompts.default_model(), parallel=args.parallel)
    spec.cmd += ["--threads", str(args.threads)]
    with servers.Server(spec, Path(tempfile.mkdtemp(prefix="chatd-fault-load-"))) as srv:
        yield srv.base, srv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fault_load", description=__doc__)
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--disconnect", type=float, default=0.3, help="share of clients hanging up")
    ap.add_argument("--hangup-window", type=float, default=20.0, help="latest timed hang-up, s")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--url", help="a running chatd (default: start one; RSS needs that)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="the started server's (see README)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    with server(args) as (url, srv):
        rounds = FaultLoad(url, args, srv).run()
    rss = [r.rss_mb for r in rounds if r.rss_mb is not None]
    bad = sum(len(r.failed) for r in rounds)
    leaks = sum(1 for r in rounds if r.leaked)
    complete = sum(r.completed for r in rounds)
    hung = sum(r.hung_up for r in rounds)
    print(
        f"\n{len(rounds)} rounds: {complete} streams complete and valid, {hung} hung up, "
        f"{bad} bad, {leaks} rounds with active work left after {SETTLE_S:.0f} s"
        + (f"; RSS {rss[0]:.0f} -> {rss[-1]:.0f} MB (max {max(rss):.0f})" if rss else "")
    )
    return 1 if bad or leaks else 0


if __name__ == "__main__":
    sys.exit(main())
