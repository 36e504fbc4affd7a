"""Decode speed under a JSON-schema constraint vs free text, same prompt and length.

    .venv/bin/python bench/constrained_decode.py [--tokens 128] [--repeats 5] [--threads 2]
        [--concurrency 1 4 8] [--model PATH]

In-process engine (LocalBackend), no HTTP. Each round runs, one after the other,
the free request (`ignore_eos`, so it always generates --tokens) and two
constrained ones whose schemas' shortest valid answer is longer than --tokens
(so they are always cut at the same length): an array of strings, and the same
with `maxLength` on the strings (a bounded repetition in the lexer, the costliest
common mask). --concurrency requests run at once. Decode tokens/s is completion
tokens after the first / time from the first token to the last; each ratio
(constrained / free, goal >= 0.9) is the median of the rounds' paired ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import replace
from typing import Any

from chatd.backend import GenerationRequest, SamplingParams, TextDelta, Usage
from chatd.engine.local import LocalBackend

PROMPT = [{"role": "user", "content": "List as many fruits as you can, in JSON."}]


def fruits(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"fruits": {"type": "array", "items": item, "minItems": 200}},
        "required": ["fruits"],
        "additionalProperties": False,
    }


SCHEMAS = {
    "json": fruits({"type": "string"}),
    "json maxLength": fruits({"type": "string", "maxLength": 24}),
}


async def one(backend: LocalBackend, request: GenerationRequest) -> tuple[int, float]:
    """(completion tokens after the first, seconds from the first token to the end)."""
    first: float | None = None
    tokens = 0
    async for event in backend.generate(request):
        if isinstance(event, TextDelta) and first is None:
            first = time.perf_counter()
        elif isinstance(event, Usage):
            tokens = event.completion_tokens
    assert first is not None
    return tokens - 1, time.perf_counter() - first


async def speed(backend: LocalBackend, request: GenerationRequest, concurrency: int) -> float:
    """Decode tokens/s of `concurrency` such requests at once (seeds 0, 1, ...)."""
    results = await asyncio.gather(
        *(
            one(backend, replace(request, sampling=replace(request.sampling, seed=k)))
            for k in range(concurrency)
        )
    )
    return sum(n for n, _ in results) / max(s for _, s in results)


async def main(args: argparse.Namespace) -> None:
    backend = LocalBackend(args.model, n_threads=args.threads, parallel=max(args.concurrency))
    free = GenerationRequest(
        model="bench",
        messages=PROMPT,
        max_tokens=args.tokens,
        ignore_eos=True,
        sampling=SamplingParams(temperature=0.7),
    )
    requests = {"free": free} | {
        name: replace(
            free,
            ignore_eos=False,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "fruits", "schema": schema, "strict": True},
            },
        )
        for name, schema in SCHEMAS.items()
    }
    print(f"{args.tokens} tokens, {args.repeats} rounds, {args.threads} threads; tok/s (ratio)")
    print(f"{'concurrency':>11}" + "".join(f"  {name:>20}" for name in requests))
    try:
        for concurrency in args.concurrency:
            for request in requests.values():  # warm-up: compile, caches
                await speed(backend, request, concurrency)
            runs: dict[str, list[float]] = {name: [] for name in requests}
            for _ in range(args.repeats):
                for name, request in requests.items():
                    runs[name].append(await speed(backend, request, concurrency))
            cells = []
            for values in runs.values():
                ratio = statistics.median(v / f for v, f in zip(values, runs["free"], strict=True))
                cells.append(f"{statistics.median(values):>12.1f} ({ratio:.2f})")
            print(f"{concurrency:>11}" + "".join(f"  {c:>20}" for c in cells))
    finally:
        await backend.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--model", default=None)
    asyncio.run(main(parser.parse_args()))
