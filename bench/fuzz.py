"""Fuzz a live chatd with schemathesis, from the OpenAPI document it serves.

    python -m bench.fuzz [--requests 10000] [--workers 4] [--url URL] [--database-url URL]

Without --url it starts its own `chatd serve --parallel 8 --ctx 2048`. Every operation of
GET /openapi.json gets generated requests, valid ones (positive) and ones that break the
schema (negative); each response must not be a 5xx and must match the document (status,
content type, body; every chunk of a stream against CreateChatCompletionStreamResponse,
the stream ending with `[DONE]` or an error event; every event of a Responses stream
against ResponseStreamEvent, numbered in order, the last one ending the response). Prints
a markdown table of the run.
tests/test_fuzz.py runs the same fuzzer with a few hundred requests.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from bench import prompts, servers
from bench.streams import StreamValidator, events_of

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Share of the requests per operation: generation is where the work (and the risk) is.
WEIGHTS = {
    "POST /chat/completions": 0.3,
    "GET /chat/completions": 0.06,
    "GET /chat/completions/{completion_id}": 0.05,
    "POST /chat/completions/{completion_id}": 0.06,
    "DELETE /chat/completions/{completion_id}": 0.04,
    "GET /chat/completions/{completion_id}/messages": 0.05,
    "GET /models": 0.02,
    "GET /models/{model}": 0.04,
    "POST /responses": 0.2,
    "GET /responses/{response_id}": 0.06,
    "DELETE /responses/{response_id}": 0.04,
    "POST /responses/{response_id}/cancel": 0.03,
    "GET /responses/{response_id}/input_items": 0.05,
}
MAX_TOKENS = 8
MESSAGE_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id", "function_call"}
MESSAGE_KEYS |= {"refusal", "audio"}
STORED = 6


@dataclass
class Report:
    """What a run sent and what came back."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    generated: int = 0  # completions answered 200
    streams: int = 0
    chunks: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        rows = [
            "| operation | requests |",
            "| --- | --- |",
            *(f"| {op} | {n} |" for op, n in sorted(self.by_operation.items())),
        ]
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return "\n".join(
            [
                *rows,
                "",
                f"{self.requests} requests in {self.seconds:.0f} s; statuses {statuses}; "
                f"{self.streams} streams ({self.chunks} chunks); "
                f"{sum(n for c, n in self.statuses.items() if c >= 500)} responses 5xx; "
                f"{len(self.failures)} failures.",
            ]
        )


class Fuzzer:
    """Generated requests against one live chatd."""

    def __init__(self, url: str, seed: int = 1, progress: bool = False) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.document = self.session.get(self.url + "/openapi.json", timeout=30).json()
        config = schemathesis.Config()
        self.schema = schemathesis.openapi.from_dict(self.document, config=config)
        self.streams = StreamValidator(self.document)
        self.random = random.Random(seed)
        self.seed = seed
        self.progress = progress
        self.model = self.session.get(self.url + "/v1/models", timeout=30).json()["data"][0]["id"]
        self.stored: list[str] = []
        self.responses: list[str] = []
        self.report = Report()
        request = self.document["components"]["schemas"]["CreateChatCompletionRequest"]
        self.request_keys = {key for part in request["allOf"] for key in part.get("properties", {})}

    def seed_store(self) -> None:
        """Stored completions, so that the id operations also find some."""
        for i in range(STORED):
            body = {
                "model": self.model,
                "messages": [{"role": "user", "content": f"Say {i}."}],
                "max_completion_tokens": 4,
                "store": True,
                "metadata": {"fuzz": str(i % 3)},
            }
            response = self.session.post(self.url + "/v1/chat/completions", json=body, timeout=120)
            response.raise_for_status()
            self.stored.append(response.json()["id"])
            body = {"model": self.model, "input": f"Say {i}.", "max_output_tokens": 16}
            response = self.session.post(self.url + "/v1/responses", json=body, timeout=120)
            response.raise_for_status()
            self.responses.append(response.json()["id"])

    def tame(self, case: schemathesis.Case) -> None:
        """Keep generation short and aim part of the requests at what exists."""
        if case.operation.path == "/chat/completions" and isinstance(case.body, dict):
            body = case.body
            # The schema allows any extra property, chatd rejects them: let most bodies in.
            if self.random.random() < 0.8:
                self.declared_only(body)
            if self.random.random() < 0.7:
                body["model"] = self.model
            for key in ("max_tokens", "max_completion_tokens"):
                if isinstance(body.get(key), int | float) and not isinstance(body[key], bool):
                    body[key] = max(-1, min(body[key], MAX_TOKENS))
            if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
                body["max_completion_tokens"] = MAX_TOKENS
            if self.random.random() < 0.3:
                body["stream"] = True
            if isinstance(body.get("n"), int) and not isinstance(body["n"], bool):
                body["n"] = min(body["n"], 2)
        if case.operation.path == "/responses" and isinstance(case.body, dict):
            body = case.body
            if self.random.random() < 0.7:
                body["model"] = self.model
            tokens = body.get("max_output_tokens")
            if isinstance(tokens, int | float) and not isinstance(tokens, bool):
                body["max_output_tokens"] = max(-1, min(tokens, 16))
            elif tokens is None:
                body["max_output_tokens"] = 16
            if body.get("background") and self.random.random() < 0.8:
                del body["background"]  # a run left going costs the engine, not the check
        params = case.path_parameters or {}
        if "response_id" in params and self.responses and self.random.random() < 0.5:
            params["response_id"] = self.random.choice(self.responses)
        if "completion_id" in params and self.stored and self.random.random() < 0.5:
            params["completion_id"] = self.random.choice(self.stored)
        if "model" in params and self.random.random() < 0.5:
            params["model"] = self.model

    def declared_only(self, body: dict[str, Any]) -> None:
        for key in set(body) - self.request_keys:
            del body[key]
        messages = body.get("messages")
        for message in messages if isinstance(messages, list) else ():
            if isinstance(message, dict):
                for key in set(message) - MESSAGE_KEYS:
                    del message[key]

    def send(self, label: str, case: schemathesis.Case) -> None:
        self.tame(case)
        try:
            response = case.call(base_url=self.url + "/v1", session=self.session, timeout=300)
        except requests.RequestException as exc:
            self.report.failures.append(f"{label}: no response ({exc!r}) for {case.body!r:.300}")
            return
        self.report.requests += 1
        if self.progress and self.report.requests % 500 == 0:
            print(f"{self.report.requests} requests (one worker)", file=sys.stderr, flush=True)
        self.report.by_operation[label] += 1
        self.report.statuses[response.status_code] += 1
        if label in ("POST /chat/completions", "POST /responses") and response.status_code == 200:
            self.report.generated += 1
        content_type = response.headers.get("content-type") or [""]
        stream = content_type[0].startswith("text/event-stream")
        # schemathesis would validate each SSE event's envelope, not its data: see below
        checks = CHECKS[:-1] if stream else CHECKS
        try:
            case.validate_response(response, checks=checks)
        except Exception as exc:  # schemathesis raises a FailureGroup of its checks
            self.report.failures.append(f"{label} -> {response.status_code}: {brief(exc)}")
        if stream:
            self.report.streams += 1
            events = events_of(response.text)
            resumed = "starting_after" in (case.query or {})
            problems = self.streams.problems(events, "/responses" in label, resumed)
            self.report.chunks += max(0, len(events) - 1)
            self.report.failures += [f"{label} stream: {p}" for p in problems]

    def operation(self, label: str, operation: Any, mode: GenerationMode, examples: int) -> None:
        strategy = operation.as_strategy(generation_mode=mode)

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def run(case: schemathesis.Case) -> None:
            self.send(label, case)

        hypothesis.seed(self.seed)(run)()

    def run(self, total: int) -> Report:
        started_at = time.monotonic()
        self.seed_store()
        for result in self.schema.get_all_operations():
            operation = result.ok()
            label = f"{operation.method.upper()} {operation.path}"
            share = max(1, round(total * WEIGHTS.get(label, 0.05) / 2))
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                self.operation(label, operation, mode, share)
        self.report.seconds = time.monotonic() - started_at
        return self.report


def merge(reports: list[Report]) -> Report:
    total = Report()
    for report in reports:
        total.requests += report.requests
        total.statuses += report.statuses
        total.by_operation += report.by_operation
        total.generated += report.generated
        total.streams += report.streams
        total.chunks += report.chunks
        total.failures += report.failures
        total.seconds = max(total.seconds, report.seconds)
    return total


def work(url: str, seed: int, requests: int, progress: bool) -> Report:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler is for the parent
    return Fuzzer(url, seed, progress).run(requests)


def brief(exc: Exception) -> str:
    """A schemathesis failure in a few lines: what failed and the curl that reproduces it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    curl = next((line for line in lines if line.startswith("curl ")), "")
    return " / ".join(lines[:6])[:800] + (f"\n    {curl[:1500]}" if curl else "")


@contextmanager
def server(url: str | None, threads: int, database_url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    spec = servers.chatd(prompts.default_model(), parallel=8, ctx=2048)
    spec.cmd += ["--threads", str(threads)]
    if database_url:
        spec.cmd += ["--database-url", database_url]
    with servers.Server(spec, Path(tempfile.mkdtemp(prefix="chatd-fuzz-"))) as srv:
        yield srv.base


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__)
    ap.add_argument("--requests", type=int, default=10_000, help="generated requests, about")
    ap.add_argument("--url", help="a running chatd (default: start one)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="the started server's (see README)")
    ap.add_argument("--database-url", help="the started server's store (default: SQLite)")
    ap.add_argument("--workers", type=int, default=4, help="fuzzing processes (seeds differ)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    with server(args.url, args.threads, args.database_url) as url:
        each = args.requests // args.workers
        share = [(url, args.seed + i, each, i == 0) for i in range(args.workers)]
        if args.workers == 1:
            report = work(*share[0])
        else:  # spawned, not forked: a fork of this threaded process can deadlock
            with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
                report = merge(pool.starmap(work, share))
    print(report.table())
    for failure in report.failures[:50]:
        print("-", failure)
    return 1 if report.failures or any(c >= 500 for c in report.statuses) else 0


if __name__ == "__main__":
    sys.exit(main())
