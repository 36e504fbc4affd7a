"""Microseconds per `Sampler.sample` call on a 49,152-token vocabulary (no model needed).

    .venv/bin/python bench/sampling_micro.py [--steps N]

Logits are synthetic but shaped like a small LM's: a heavy-tailed spread with a few
dominant tokens; the steps cycle through 64 distinct rows (12 MB: out of L2, in L3, as the
rows of a decoded batch would be). Times are process CPU time (best of --repeat passes), so
other work on a busy machine inflates them less than wall time would.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from chatd.backend import SamplingParams
from chatd.engine.sampling import Sampler, sample_greedy_batch

N_VOCAB = 49152

CASES: dict[str, tuple[SamplingParams, int | None, bool]] = {
    "greedy": (SamplingParams(temperature=0.0), None, False),
    "greedy + logprobs(top 20)": (SamplingParams(temperature=0.0), 20, False),
    "temperature 1": (SamplingParams(temperature=1.0), None, False),
    "temperature 0.8 + top_p 0.95": (SamplingParams(temperature=0.8, top_p=0.95), None, False),
    "temperature 0.3 + top_p 0.9": (SamplingParams(temperature=0.3, top_p=0.9), None, False),
    "top_k 40 + top_p 0.95 + min_p 0.05": (
        SamplingParams(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05),
        None,
        False,
    ),
    "penalties (rep/freq/pres) + temp + top_p": (
        SamplingParams(
            temperature=0.8,
            top_p=0.95,
            repetition_penalty=1.1,
            frequency_penalty=0.5,
            presence_penalty=0.5,
            logit_bias={11: 5.0, 12: -100.0},
        ),
        None,
        False,
    ),
    "full chain + logprobs(top 20)": (
        SamplingParams(
            temperature=0.8,
            top_k=40,
            top_p=0.95,
            frequency_penalty=0.5,
            presence_penalty=0.5,
            logit_bias={11: 5.0},
        ),
        20,
        False,
    ),
    "greedy + grammar mask (50%)": (SamplingParams(temperature=0.0), None, True),
    "temp + top_p + grammar mask (50%)": (
        SamplingParams(temperature=0.8, top_p=0.95),
        None,
        True,
    ),
}


def synthetic_logits(steps: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = (rng.standard_t(4, size=(steps, N_VOCAB)) * 2.5).astype(np.float32)
    for row in rows:
        row[rng.integers(N_VOCAB, size=8)] += rng.uniform(8, 14, size=8).astype(np.float32)
    return rows


def run(
    params: SamplingParams,
    top_logprobs: int | None,
    rows: list[np.ndarray],
    mask: np.ndarray | None,
    repeat: int,
) -> float:
    """Best of `repeat` passes over the rows, in microseconds per sample (a fresh sampler each
    pass, so penalty tables grow as in a real generation)."""
    best = math.inf
    for _ in range(repeat):
        sampler = Sampler(params, N_VOCAB, top_logprobs=top_logprobs, seed=1)
        start = time.process_time()
        for row in rows:
            sampler.sample(row, mask)
        best = min(best, (time.process_time() - start) / len(rows) * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--logits", help="a .npy of real (steps, 49152) float32 logits rows")
    args = parser.parse_args()
    pool = np.load(args.logits).astype(np.float32) if args.logits else synthetic_logits(64)
    rows = [pool[i % len(pool)] for i in range(args.steps)]
    mask = np.random.default_rng(1).random(N_VOCAB) < 0.5
    width = max(map(len, CASES))
    print(f"vocabulary {N_VOCAB}, {args.steps} steps, best of {args.repeat}; µs per sample")
    for name, (params, top_logprobs, masked) in CASES.items():
        micros = run(params, top_logprobs, rows, mask if masked else None, args.repeat)
        print(f"  {name:<{width}}  {micros:8.1f}")
    batches = [pool[i : i + 8] for i in range(0, len(pool), 8)]
    best = math.inf
    for _ in range(args.repeat):
        start = time.process_time()
        for batch in batches:
            sample_greedy_batch(batch)
        best = min(best, (time.process_time() - start) / (8 * len(batches)) * 1e6)
    print(f"  {'sample_greedy_batch (8 rows), per row':<{width}}  {best:8.1f}")


if __name__ == "__main__":
    main()
