"""What a choice's generated text becomes: the grammar that constrains it and the events it yields.

The scheduler asks `ChoiceOutput.mask()` before sampling each token, calls
`advance(token)` after, and feeds the decoded text (after stop sequences) to
`feed()`, which turns it into events. `finish()` closes the choice.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from chatd.backend import Event, FinishReason, GenerationRequest, TextDelta, TokenLogprob
from chatd.engine.constraints import Vocab, plan_constrained


class ChoiceOutput(Protocol):
    """Per-choice state: grammar matcher (if any) and output parser."""

    unconstrained: bool  # mask() is always None: any token goes

    def mask(self) -> np.ndarray | None:
        """Allowed next tokens as a bool array of n_vocab, or None when any token goes."""
        ...

    def advance(self, token: int) -> None:
        """Record the sampled token in the grammar."""
        ...

    def must_stop(self) -> bool:
        """True when the grammar allows nothing but the end of the output."""
        ...

    def feed(self, text: str, logprobs: list[TokenLogprob] | None) -> list[Event]:
        """Turn newly generated text (stops already removed) into events."""
        ...

    def finish(self, reason: FinishReason) -> tuple[list[Event], FinishReason]:
        """Flush what is held back; may change the reason (e.g. to "tool_calls")."""
        ...


class OutputPlan(Protocol):
    """Per-request: how to prompt for and read back the output."""

    def new_choice(self, index: int) -> ChoiceOutput: ...


class PlainChoice:
    """Free text: no grammar; every piece of text is content."""

    __slots__ = ("index",)
    unconstrained = True

    def __init__(self, index: int) -> None:
        self.index = index

    def mask(self) -> np.ndarray | None:
        return None

    def advance(self, token: int) -> None:
        pass

    def must_stop(self) -> bool:
        return False

    def feed(self, text: str, logprobs: list[TokenLogprob] | None) -> list[Event]:
        if not text and not logprobs:
            return []
        return [TextDelta(self.index, text, logprobs)]

    def finish(self, reason: FinishReason) -> tuple[list[Event], FinishReason]:
        return [], reason


class PlainPlan:
    def new_choice(self, index: int) -> ChoiceOutput:
        return PlainChoice(index)


def plan_output(request: GenerationRequest, vocab: Vocab) -> OutputPlan:
    """The plan for a request; constrained plans come from chatd.engine.constraints.

    Raises BackendError (a 400) for a schema or grammar that cannot be enforced.
    """
    return plan_constrained(request, vocab) or PlainPlan()
