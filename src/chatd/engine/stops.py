"""From token bytes to emittable text: UTF-8 across token boundaries, stop sequences, and
which tokens (logprob entries) each emitted piece of text belongs to.

The engine normally uses `TokenText`, one per choice, which combines the two lower pieces:

- `Utf8Decoder`: token bytes -> text; a character split across tokens waits for its last
  byte; invalid bytes become U+FFFD; an unfinished character at the end becomes U+FFFD.
- `StopMatcher`: text -> text safe to emit now; holds back a tail that could start a stop
  sequence, and cuts the text before the first stop to appear (never emitted itself).

Per choice, the engine does:

    stream = TokenText(request.stop)
    for each sampled token (not an end-of-generation one):
        out = stream.push(vocab.token_bytes(token), logprob_entry_or_None)
        emit out.text with out.items (skip when both are empty)
        if out.stopped: finish with reason "stop"
    on end of generation or length: out = stream.finish(); emit it likewise
"""

from __future__ import annotations

import codecs
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["Emitted", "StopMatcher", "TokenText", "Utf8Decoder"]

T = TypeVar("T")


class Utf8Decoder:
    """Incremental UTF-8 decoder for token byte strings."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def decode(self, data: bytes) -> str:
        """The text completed by `data`; bytes of an unfinished character stay buffered."""
        return self._decoder.decode(data)

    def flush(self) -> str:
        """The buffered bytes of an unfinished character, as U+FFFD (or "")."""
        return self._decoder.decode(b"", final=True)

    @property
    def pending(self) -> bool:
        """Whether bytes of an unfinished character are buffered."""
        return bool(self._decoder.getstate()[0])


class StopMatcher:
    """Finds stop sequences in streamed text.

    `push(text)` returns `(emit, stopped)`. Without a stop, `emit` is the new text minus a
    held-back tail (the longest suffix of everything seen that is a proper prefix of a stop
    sequence), preceded by earlier held-back text that turned out not to be a stop. When a
    stop sequence appears, possibly split across pushes, `emit` is everything before it and
    `stopped` is True; later pushes return `("", True)`. `flush()` returns the held-back text
    at the end of generation.

    The stop that wins is the first one to be complete as the text streams in (earliest end;
    on a tie, the one starting first), so concatenating every `emit` (and the flush) gives
    the same text whatever the chunking: the text before that stop, or all of it.

    `emitted` counts the characters returned so far and `held` those held back, so that
    character offsets into the whole stream map emitted text back to the tokens behind it.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in dict.fromkeys(stops) if s]
        self._longest = max((len(s) for s in self.stops), default=0)
        self._initials = {s[0] for s in self.stops}
        self._held = ""
        self.emitted = 0
        self.stopped = False
        self.matched: str | None = None  # the stop sequence that ended the text

    @property
    def held(self) -> int:
        """Characters received but not yet emitted."""
        return len(self._held)

    def push(self, text: str) -> tuple[str, bool]:
        """Feed text; return the text safe to emit now and whether a stop was hit."""
        if self.stopped:
            return "", True
        if not self.stops:
            self.emitted += len(text)
            return text, False
        buf = self._held + text
        cut, self.matched = _first_stop(buf, self.stops)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            self.emitted += cut
            return buf[:cut], True
        keep = self._tail(buf)
        self._held = buf[len(buf) - keep :] if keep else ""
        out = buf[: len(buf) - keep]
        self.emitted += len(out)
        return out, False

    def flush(self) -> str:
        """The held-back text, once no more text will come ("" after a stop)."""
        out, self._held = self._held, ""
        self.emitted += len(out)
        return out

    def _tail(self, buf: str) -> int:
        """Length of the longest suffix of `buf` that is a proper prefix of a stop."""
        for size in range(min(len(buf), self._longest - 1), 0, -1):
            if buf[-size] in self._initials:
                suffix = buf[-size:]
                if any(s.startswith(suffix) for s in self.stops):
                    return size
        return 0


def _first_stop(text: str, stops: list[str]) -> tuple[int, str | None]:
    """Where the stop that ends first in `text` begins (ties: the one starting first), and
    which stop it is; (-1, None) when none is in `text`."""
    best: tuple[int, int] | None = None
    matched = None
    for stop in stops:
        at = text.find(stop)
        if at >= 0 and (best is None or (at + len(stop), at) < best):
            best = (at + len(stop), at)
            matched = stop
    return (-1, None) if best is None else (best[1], matched)


@dataclass(slots=True)
class Emitted(Generic[T]):
    """Text to emit now, the items of the tokens it completes, and whether a stop was hit."""

    text: str
    items: list[T] = field(default_factory=list)
    stopped: bool = False


@dataclass(slots=True)
class _Pending(Generic[T]):
    item: T
    start: int
    end: int | None


class TokenText(Generic[T]):
    """One choice's token stream: bytes in, emittable text out, with items attributed.

    `push(data, item)` takes one token's bytes and an optional item (its logprob entry) and
    returns an `Emitted`. Each token covers a span of characters in the decoded stream: it
    starts where the decoded text stood before it and ends once its bytes, and the bytes of
    any character it began, have been decoded. An item is released, in token order, with the
    push that emits the last character of its token's span; a token whose bytes decode to
    nothing rides along with the next emitted text. When a stop sequence is hit, the tokens
    whose span starts before the stop are released (their text before the stop was emitted),
    and those lying wholly inside the stop (or after it) are dropped. `finish()`, at the end of
    generation without a stop, emits the held-back text and releases every remaining item.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.decoder = Utf8Decoder()
        self.matcher = StopMatcher(stops)
        self._decoded = 0
        self._pending: deque[_Pending[T]] = deque()
        self._open: list[_Pending[T]] = []

    @property
    def stopped(self) -> bool:
        return self.matcher.stopped

    def push(self, data: bytes, item: T | None = None) -> Emitted[T]:
        """Feed one token's bytes (and its item, if any)."""
        if self.matcher.stopped:
            return Emitted("", [], True)
        text = self.decoder.decode(data)
        if item is not None:
            entry = _Pending(item, self._decoded, None)
            self._pending.append(entry)
            self._open.append(entry)
        self._decoded += len(text)
        if self._open and not self.decoder.pending:
            for entry in self._open:
                entry.end = self._decoded
            self._open.clear()
        out, stopped = self.matcher.push(text)
        if stopped:
            return Emitted(out, self._release_before(self.matcher.emitted), True)
        return Emitted(out, self._release_through(self.matcher.emitted))

    def finish(self) -> Emitted[T]:
        """Emit what is held back and release every item ("" and none after a stop)."""
        if self.matcher.stopped:
            return Emitted("", [], True)
        text = self.decoder.flush()
        out, stopped = self.matcher.push(text)
        if stopped:
            return Emitted(out, self._release_before(self.matcher.emitted), True)
        out += self.matcher.flush()
        items = [entry.item for entry in self._pending]
        self._pending.clear()
        self._open.clear()
        return Emitted(out, items)

    def _release_through(self, emitted: int) -> list[T]:
        items: list[T] = []
        while self._pending:
            end = self._pending[0].end
            if end is None or end > emitted:
                break
            items.append(self._pending.popleft().item)
        return items

    def _release_before(self, stop_at: int) -> list[T]:
        items = [entry.item for entry in self._pending if entry.start < stop_at]
        self._pending.clear()
        self._open.clear()
        return items
