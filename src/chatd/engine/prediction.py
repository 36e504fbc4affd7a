"""Predicted outputs: draft tokens taken from the predicted text, verified in one decode.

The draft follows the prediction from where the output last agreed with it. After a
mismatch (an edit), it re-synchronises on the last few generated tokens (an n-gram
lookup in the prediction), so the unchanged text after an edit is drafted again.
Verification samples every position with the choice's own sampler, in order, and keeps
tokens only up to the first disagreement: the output is exactly what the request gives
without a prediction.

On a CPU a decode of k tokens costs about one single step plus 0.45 of one per further
token (docs/architecture.md), so a wrong draft is not free: after a draft accepted whole
the window becomes twice its length (up to 16: longer batches barely lower the cost per
token here); after a rejection, the number of tokens that draft got right, at least 2
(a resync after an edit is a guess until it proves right).
"""

from __future__ import annotations

MAX_DRAFT = 16
FIRST_DRAFT = 8
AFTER_MISS = 2
NGRAMS = (3, 2)


class Draft:
    """The prediction of one choice and where the output stands in it."""

    __slots__ = ("accepted", "anchor", "cursor", "predicted", "window")

    def __init__(self, predicted: list[int]) -> None:
        self.predicted = predicted
        self.cursor: int | None = 0  # index in predicted of the token expected next
        self.anchor = 0  # where the output last agreed with the prediction
        self.accepted = 0  # prediction tokens that appeared in the output, in order
        self.window = FIRST_DRAFT  # tokens to propose next

    @property
    def rejected(self) -> int:
        """Prediction tokens that did not appear in the output (OpenAI's definition)."""
        return max(0, len(self.predicted) - self.accepted)

    def propose(self, limit: int) -> list[int]:
        """Up to `limit` tokens expected after the last sampled one."""
        if self.cursor is None or limit <= 0:
            return []
        return self.predicted[self.cursor : self.cursor + min(limit, self.window)]

    def verified(self, drafted: int, kept: int) -> None:
        """Adapt the window to how the last draft of `drafted` tokens fared."""
        if kept == drafted:
            self.window = min(MAX_DRAFT, max(self.window, 2 * drafted))
        else:
            self.window = max(AFTER_MISS, kept)

    def observe(self, generated: list[int]) -> None:
        """Follow the output: `generated[-1]` was just sampled."""
        token = generated[-1]
        cursor = self.cursor
        if cursor is not None and cursor < len(self.predicted) and self.predicted[cursor] == token:
            self.cursor = self.anchor = cursor + 1
            self.accepted += 1
            return
        found = self._resync(generated)
        if found is None:
            self.cursor = None
            return
        start, n = found
        if start >= self.anchor:  # still in order: these prediction tokens appeared too
            self.accepted += n
        end = start + n
        self.anchor = end
        self.cursor = end if end < len(self.predicted) else None

    def _resync(self, generated: list[int]) -> tuple[int, int] | None:
        """Where the last few generated tokens occur in the prediction: (start, length)."""
        predicted = self.predicted
        for n in NGRAMS:
            if len(generated) < n:
                continue
            tail = generated[-n:]
            first = tail[0]
            last = len(predicted) - n + 1
            for i in (*range(self.anchor, last), *range(0, min(self.anchor, last))):
                if predicted[i] == first and predicted[i : i + n] == tail:
                    return i, n
        return None
