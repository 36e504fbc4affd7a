"""Decode speed under a JSON-schema constraint vs free text, same prompt and length.

    .venv/bin/python bench/constrained_decode.py [--tokens 128] [--repeats 5] [--threads 2]
        [--concurrency 1 4] [--model PATH]

In-process engine (LocalBackend), no HTTP. Each round runs the free request
(`ignore_eos`, so it always generates --tokens) and the constrained one (a schema
whose shortest valid answer is longer than --tokens, so it is always cut at the
same length), alternating, --concurrency requests at once. Decode tokens/s is
completion tokens after the first / time from the first token to the last,
median of the rounds; the ratio constrained/free is the figure to watch
(goal >= 0.9). Process CPU time per token is printed too: it is steadier than
wall time when other work shares the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass, replace

from chatd.backend import GenerationRequest, SamplingParams, TextDelta, Usage
from chatd.engine.local import LocalBackend

PROMPT = [{"role": "user", "content": "List as many fruits as you can, in JSON."}]
SCHEMA = {
    "type": "object",
    "properties": {
        "fruits": {"type": "array", "items": {"type": "string", "maxLength": 24}, "minItems": 200}
    },
    "required": ["fruits"],
    "additionalProperties": False,
}


@dataclass
class Run:
    tokens: int
    seconds: float
    cpu: float


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


async def measure(backend: LocalBackend, request: GenerationRequest, concurrency: int) -> Run:
    cpu = time.process_time()
    results = await asyncio.gather(
        *(
            one(backend, replace(request, sampling=replace(request.sampling, seed=k)))
            for k in range(concurrency)
        )
    )
    tokens = sum(n for n, _ in results)
    return Run(tokens, max(s for _, s in results), time.process_time() - cpu)


async def main(args: argparse.Namespace) -> None:
    backend = LocalBackend(args.model, n_threads=args.threads, parallel=max(args.concurrency))
    free = GenerationRequest(
        model="bench",
        messages=PROMPT,
        max_tokens=args.tokens,
        ignore_eos=True,
        sampling=SamplingParams(temperature=0.7),
    )
    constrained = replace(
        free,
        ignore_eos=False,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "fruits", "schema": SCHEMA, "strict": True},
        },
    )
    print(f"{args.tokens} tokens, {args.repeats} rounds, {args.threads} threads")
    print("concurrency  free tok/s  json tok/s  ratio  free ms cpu/tok  json ms cpu/tok")
    try:
        for concurrency in args.concurrency:
            await measure(backend, constrained, concurrency)  # warm-up: compile, caches
            runs: dict[str, list[Run]] = {"free": [], "json": []}
            for _ in range(args.repeats):
                runs["free"].append(await measure(backend, free, concurrency))
                runs["json"].append(await measure(backend, constrained, concurrency))
            speed = {k: statistics.median(r.tokens / r.seconds for r in v) for k, v in runs.items()}
            cpu = {k: statistics.median(1e3 * r.cpu / r.tokens for r in v) for k, v in runs.items()}
            print(
                f"{concurrency:>11}  {speed['free']:>10.1f}  {speed['json']:>10.1f}  "
                f"{speed['json'] / speed['free']:>5.2f}  {cpu['free']:>15.2f}  {cpu['json']:>15.2f}"
            )
    finally:
        await backend.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--model", default=None)
    asyncio.run(main(parser.parse_args()))
