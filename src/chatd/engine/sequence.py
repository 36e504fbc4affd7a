"""A request in the engine (`Job`) and each of its choices (`Choice`): per-token bookkeeping."""

from __future__ import annotations

import asyncio
import codecs
from collections import deque
from dataclasses import dataclass, field

from chatd.backend import (
    Event,
    Finish,
    FinishReason,
    GenerationRequest,
    TokenLogprob,
    TopLogprob,
)
from chatd.engine.output import ChoiceOutput
from chatd.engine.runtime import Vocab
from chatd.engine.sampling import LogprobInfo, Sampler
from chatd.engine.stops import StopMatcher


class Choice:
    """One generated choice: its sequence id, sampler, stop matcher and output parser."""

    def __init__(
        self,
        index: int,
        seq: int,
        sampler: Sampler,
        output: ChoiceOutput,
        stops: list[str],
        want_logprobs: bool,
    ) -> None:
        self.index = index
        self.seq = seq
        self.sampler = sampler
        self.output = output
        self.stops = StopMatcher(stops) if stops else None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.want_logprobs = want_logprobs
        self.tokens: list[int] = []  # sampled tokens that count as completion tokens
        self.next_token = -1  # sampled, not yet decoded
        self.pos = 0  # position of next_token
        self.finished = False
        self.pushed = 0  # characters given to the stop matcher
        self.emitted = 0  # characters released as output
        self.pending: deque[tuple[int, int, TokenLogprob]] = deque()  # (start, end, entry)

    def take_text(self, text: str, entry: TokenLogprob | None) -> tuple[list[Event], bool]:
        """Feed one token's text; returns the events it releases and whether a stop was hit.

        A logprob entry goes out with the last character of its token's text; after a
        stop, only the entries of tokens that began before the stop go out.
        """
        start = self.pushed
        self.pushed += len(text)
        if entry is not None:
            self.pending.append((start, self.pushed, entry))
        if self.stops is None:
            released, hit = text, False
        else:
            released, hit = self.stops.push(text)
        return self._release(released, hit), hit

    def flush(self) -> list[Event]:
        """Release what the decoder and the stop matcher still hold."""
        tail = self.decoder.decode(b"", final=True)
        self.pushed += len(tail)
        released = tail if self.stops is None else self.stops.push(tail)[0] + self.stops.flush()
        return self._release(released, final=True)

    def _release(self, text: str, stopped: bool = False, final: bool = False) -> list[Event]:
        self.emitted += len(text)
        entries: list[TokenLogprob] | None = None
        if self.want_logprobs:
            entries = []
            pending = self.pending
            while pending:
                start, end, entry = pending[0]
                if final or end <= self.emitted or (stopped and start < self.emitted):
                    entries.append(pending.popleft()[2])
                else:
                    break
            if stopped:
                pending.clear()
        if not text and not entries:
            return []
        return self.output.feed(text, entries)


@dataclass(eq=False)
class Job:
    """A request admitted to (or waiting for) the engine."""

    request: GenerationRequest
    prompt: list[int]
    plan: object
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[list[Event] | None]
    ctx_limit: int
    choices: list[Choice] = field(default_factory=list)
    cancelled: bool = False
    prefill_pos: int = 0  # next prompt token to evaluate
    cached_tokens: int = 0
    outbox: list[Event] = field(default_factory=list)

    @property
    def prefilling(self) -> bool:
        return self.prefill_pos < len(self.prompt)

    @property
    def done(self) -> bool:
        return bool(self.choices) and all(c.finished for c in self.choices)

    def logprob_entry(self, vocab: Vocab, info: LogprobInfo) -> TokenLogprob:
        return TokenLogprob(
            token=vocab.token_text(info.token_id),
            logprob=info.logprob,
            bytes=list(vocab.token_bytes(info.token_id)),
            top_logprobs=[
                TopLogprob(vocab.token_text(t), lp, list(vocab.token_bytes(t)))
                for t, lp in info.top
            ],
        )

    def finish_choice(self, choice: Choice, reason: FinishReason) -> None:
        events = choice.flush()
        more, reason = choice.output.finish(reason)
        choice.finished = True
        self.outbox.extend(events)
        self.outbox.extend(more)
        self.outbox.append(Finish(choice.index, reason))

    def send(self, final: list[Event] | None = None) -> None:
        """Hand the events of this step to the request's coroutine (thread-safe)."""
        if final:
            self.outbox.extend(final)
        if self.outbox:
            events, self.outbox = self.outbox, []
            self.loop.call_soon_threadsafe(self.queue.put_nowait, events)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, None)
