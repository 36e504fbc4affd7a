"""The measured scenarios, each against one running server."""

from __future__ import annotations

import asyncio
import statistics
from functools import cache
from pathlib import Path
from typing import Any

from bench import load, prompts
from bench.quiet import Foreign
from bench.servers import LCP, Server


@cache
def eog_ids(model: Path) -> tuple[int, ...]:
    """End-of-generation tokens of the model (llama-cpp-python's server has no ignore_eos)."""
    import llama_cpp

    llm = prompts.tokens(model).llm
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n = llama_cpp.llama_vocab_n_tokens(vocab)
    return tuple(t for t in range(n) if llama_cpp.llama_vocab_is_eog(vocab, t))


def request(
    server: Server,
    model: Path,
    messages: list[dict[str, str]],
    max_tokens: int = 128,
    ignore_eos: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """A streaming body in the dialect `server` understands."""
    extra["model"] = server.model_id
    if not server.kind.startswith(LCP):
        return load.body(messages, max_tokens, ignore_eos, usage=True, **extra)
    b = load.body(messages, max_tokens, ignore_eos=False, usage=False, **extra)
    if ignore_eos:  # its equivalent: forbid every end-of-generation token
        b["logit_bias"] = {str(t): -100 for t in eog_ids(model)}
    return b


def warm_up(server: Server, model: Path) -> load.Result:
    r = asyncio.run(load.single(server.base, request(server, model, prompts.chat(999), 16)))
    if r.error:
        raise RuntimeError(f"warm-up failed: {r.error}")
    return r


def scaling(
    server: Server, model: Path, level: int, rounds: int, offset: int = 0
) -> dict[str, Any]:
    """Closed loop: `level` streams in flight, `level * rounds` requests of 128 tokens."""
    payloads = [
        request(server, model, prompts.chat(offset + i)) for i in range(max(level * rounds, 2))
    ]
    with Foreign(server.proc.pid if server.proc else None) as foreign:
        run = asyncio.run(load.closed_loop(server.base, payloads, level))
    ttfts = [r.ttft for r in run.ok if r.ttft is not None]
    return {
        "level": level,
        "requests": len(payloads),
        "tokens": run.tokens,
        "wall_s": round(run.wall, 3),
        "tok_s": round(run.tok_s, 2),
        "ttft_p50": run.ttft(50),
        "ttft_p99": run.ttft(99),
        "ttfts": [round(t, 4) for t in ttfts],
        "short_streams": sum(1 for r in run.ok if r.tokens < 128),
        "errors": run.errors[:3],
        "foreign_cores": round(foreign.cores, 2),
        "prompt_tokens": _prompt_tokens(run.ok),
    }


def _prompt_tokens(results: list[load.Result]) -> int | None:
    counts = [r.usage.get("prompt_tokens") for r in results if r.usage]
    counts = [c for c in counts if c]
    return int(statistics.median(counts)) if counts else None


def _ttft(server: Server, body: dict[str, Any]) -> load.Result:
    r = asyncio.run(load.single(server.base, body))
    if r.error:
        raise RuntimeError(r.error)
    return r


def shared_prefix(server: Server, model: Path, seed: int) -> dict[str, Any]:
    """TTFT of two requests sharing a fresh 1,500-token system prompt: cold, then warm."""
    system = prompts.tokens(model).filler(1500, seed)
    out: dict[str, Any] = {}
    for name, question in (("first", "Summarize the notes."), ("second", "List three words.")):
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        r = _ttft(server, request(server, model, msgs, 4))
        out[f"{name}_ttft"] = r.ttft
        details = (r.usage or {}).get("prompt_tokens_details") or {}
        out[f"{name}_cached"] = details.get("cached_tokens")
        out[f"{name}_prompt_tokens"] = (r.usage or {}).get("prompt_tokens")
    first, second = out["first_ttft"], out["second_ttft"]
    out["ratio"] = second / first if first and second else None
    return out


def prompt_length(server: Server, model: Path, n: int, seed: int) -> dict[str, Any]:
    """TTFT for a fresh prompt of about `n` tokens (chat template included)."""
    text = prompts.tokens(model).filler(max(n - 12, 8), seed)
    r = _ttft(server, request(server, model, [{"role": "user", "content": text}], 2))
    return {"n": n, "ttft": r.ttft, "prompt_tokens": (r.usage or {}).get("prompt_tokens")}


def prediction(server: Server, model: Path, repeats: int) -> dict[str, Any]:
    """The edit task: wall time with 90% of the output predicted vs without prediction."""
    msgs = prompts.edit_messages()
    plain = request(server, model, msgs, 256, ignore_eos=False)
    _ttft(server, plain)  # warms the prefix cache for both variants
    # The baseline is a warm run: a prompt evaluated from the cache is split differently
    # from a cold one, which can flip a greedy near-tie (docs/architecture.md).
    base = _ttft(server, plain)
    predicted_text = prompts.perturb(base.text, 0.1)
    pred_body = {**plain, "prediction": {"type": "content", "content": predicted_text}}
    probe = asyncio.run(load.single(server.base, pred_body))
    if probe.error:
        status = probe.error.split(" ", 1)[0]
        return {"skipped": f"server answered {status}: {probe.error[:200]}"}
    walls: dict[str, list[float]] = {"without": [], "with": []}
    identical = probe.text == base.text
    usage = probe.usage or {}
    for _ in range(repeats):
        walls["without"].append(_ttft(server, plain).wall)
        r = _ttft(server, pred_body)
        walls["with"].append(r.wall)
        identical = identical and r.text == base.text
    w, wo = statistics.median(walls["with"]), statistics.median(walls["without"])
    details = usage.get("completion_tokens_details") or {}
    return {
        "output_tokens": (base.usage or {}).get("completion_tokens"),
        "wall_without": wo,
        "wall_with": w,
        "ratio": w / wo if wo else None,
        "walls": walls,
        "identical_text": identical,
        "accepted": details.get("accepted_prediction_tokens"),
        "rejected": details.get("rejected_prediction_tokens"),
    }
